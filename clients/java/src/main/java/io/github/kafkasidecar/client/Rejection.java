package io.github.kafkasidecar.client;

import io.grpc.Status;
import java.util.List;

/**
 * A request the sidecar did not accept (the stream stays open): {@code code} is NOT_FOUND when the
 * offsets are not in flight on this stream, DEADLINE_EXCEEDED when their lease expired and they were
 * delivered again (a stale ack: it does not count), FAILED_PRECONDITION when the partition is not
 * assigned to the sidecar. Informational: the records are delivered again.
 *
 * @param kind which request: "ack", "nack", "extend" or "reject"
 */
public record Rejection(
    Status.Code code,
    String kind,
    String topic,
    int partition,
    List<Long> offsets,
    List<OffsetRange> ranges,
    String reason) {

  /** True if this is a late ack of a record whose lease had run out. */
  public boolean stale() {
    return code == Status.Code.DEADLINE_EXCEEDED;
  }
}
