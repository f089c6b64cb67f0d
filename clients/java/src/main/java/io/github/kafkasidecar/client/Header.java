package io.github.kafkasidecar.client;

/** A Kafka record header; {@code value} is null for a null header value, distinct from empty. */
public record Header(String key, byte[] value) {}
