package io.github.kafkasidecar.client;

/**
 * Offsets {@code first..last} of one partition, both included. Not checked here: the sidecar answers
 * a range whose first offset is after its last by ending the stream with INVALID_ARGUMENT.
 */
public record OffsetRange(long first, long last) {}
