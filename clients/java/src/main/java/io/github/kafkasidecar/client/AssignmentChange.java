package io.github.kafkasidecar.client;

import java.util.List;

/**
 * The sidecar's partitions: sent when a stream opens (then only {@code assigned} is set) and on every
 * add, revoke or loss. {@code lost} means the group moved on without the sidecar: acks of records of
 * the revoked partitions are rejected and those records are delivered again elsewhere.
 */
public record AssignmentChange(
    List<TopicPartition> assigned,
    List<TopicPartition> added,
    List<TopicPartition> revoked,
    boolean lost) {}
