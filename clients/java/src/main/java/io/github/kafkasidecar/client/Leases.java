package io.github.kafkasidecar.client;

import java.util.ArrayList;
import java.util.IdentityHashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Lease management: the client extends the records it holds before the sidecar's lease on them runs
 * out.
 *
 * <p>Every record the sidecar sends has a lease of {@code ack_timeout_ms} (from the batch). A record
 * that waits behind a slow handler, in the client's queue or in the handler itself, would otherwise
 * be delivered again elsewhere once its lease ran out, and the app's late ack would be stale: a
 * duplicate. So the client extends, for the app, every record it holds (delivered, not yet acked,
 * nacked or rejected), up to the max lease after the record arrived; then it lets the record go, so
 * only an app that is dead or stuck loses its records, and then only after the max lease.
 *
 * <p>It must cost little: no timer per record. Each held record maps to a shared {@link Lease} (one
 * per batch received, or per renewal), and one ticker per stream, every quarter of the ack timeout,
 * scans what is held (at most max-in-flight records) and extends, in one request, every record past
 * half of its lease. A renewal therefore goes out with at least a quarter of the lease left.
 */
final class Leases {
  /** When a record's lease at the sidecar runs out, and when the client stops extending it (ns). */
  record Lease(long deadlineNanos, long untilNanos, boolean never) {}

  /** The lease of records let go (past the max lease) or without a deadline: never extended. */
  static final Lease NEVER = new Lease(0, 0, true);

  /** The offsets to extend, per partition, and how many records were let go. */
  record Renewal(Map<TopicPartition, List<Long>> extend, int letGo) {}

  private Leases() {}

  /** The lease of records that just arrived (NEVER when the sidecar gives no deadline). */
  static Lease first(long nowNanos, long ackTimeoutMs, long maxLeaseNanos) {
    if (ackTimeoutMs <= 0) {
      return NEVER;
    }
    return new Lease(nowNanos + ackTimeoutMs * 1_000_000L, nowNanos + maxLeaseNanos, false);
  }

  /** How often the ticker looks: a quarter of the lease, at least 10 ms. */
  static long tickMillis(long ackTimeoutMs) {
    return Math.max(10, ackTimeoutMs / 4);
  }

  /**
   * Picks the held records due for an extension (past half of their lease) and gives them a fresh
   * lease, in place. Those whose next lease would end after their {@code until} are let go instead.
   * Times are {@link System#nanoTime} values, compared by difference as that clock requires.
   */
  static Renewal renew(
      Map<TopicPartition, Map<Long, Lease>> held, long nowNanos, long ackTimeoutMs) {
    long timeout = ackTimeoutMs * 1_000_000L;
    long dueBy = nowNanos + timeout / 2;
    long next = nowNanos + timeout;
    Map<Lease, Lease> fresh = new IdentityHashMap<>(); // one new lease per old: a batch stays together
    Map<TopicPartition, List<Long>> extend = new LinkedHashMap<>();
    int letGo = 0;
    for (Map.Entry<TopicPartition, Map<Long, Lease>> part : held.entrySet()) {
      List<Long> offsets = new ArrayList<>();
      for (Map.Entry<Long, Lease> e : part.getValue().entrySet()) {
        Lease lease = e.getValue();
        if (lease.never() || lease.deadlineNanos() - dueBy > 0) {
          continue;
        }
        if (next - lease.untilNanos() > 0) {
          e.setValue(NEVER);
          letGo++;
          continue;
        }
        e.setValue(fresh.computeIfAbsent(lease, l -> new Lease(next, l.untilNanos(), false)));
        offsets.add(e.getKey());
      }
      if (!offsets.isEmpty()) {
        extend.put(part.getKey(), offsets);
      }
    }
    return new Renewal(extend, letGo);
  }
}
