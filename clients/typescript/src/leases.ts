/**
 * Lease management: the client extends the records it holds before the sidecar's lease on them runs
 * out.
 *
 * Every record the sidecar sends has a lease of `ackTimeoutMs` (from the batch). A record that waits
 * behind a slow handler, in the client's queue or in the handler itself, would otherwise be delivered
 * again elsewhere once its lease ran out, and the app's late ack would be stale: a duplicate. So the
 * client extends, for the app, every record it holds (delivered, not yet acked, nacked or rejected),
 * up to `maxLeaseMs` after the record arrived; then it lets the record go, so only an app that is dead
 * or stuck loses its records, and then only after the max lease.
 *
 * It must cost little: no timer per record. Each held record maps to a shared Lease (one per batch
 * received, or per renewal), and one ticker per stream, every quarter of the ack timeout, scans what
 * is held (at most maxInFlight records) and extends, in one request, every record past half of its
 * lease. A renewal therefore goes out with at least a quarter of the lease left.
 */

/** Default longest time the client keeps a record's lease alive for the app: one hour. */
export const DEFAULT_MAX_LEASE_MS = 3_600_000;

/** When a record's lease runs out at the sidecar, and when the client stops extending it (ms, monotonic). */
export interface Lease {
  readonly deadline: number;
  readonly until: number;
}

/** The lease of records let go (past the max lease) or without a deadline: never extended. */
export const NEVER: Lease = Object.freeze({ deadline: Infinity, until: -Infinity });

/** The records of one partition held by a stream, with their leases. */
export interface Held {
  readonly topic: string;
  readonly partition: number;
  readonly leases: Map<bigint, Lease>;
}

/** The lease of records that just arrived (NEVER when the sidecar gives no deadline). */
export function firstLease(now: number, ackTimeoutMs: number | undefined, maxLeaseMs: number): Lease {
  if (ackTimeoutMs === undefined || ackTimeoutMs <= 0) return NEVER;
  return { deadline: now + ackTimeoutMs, until: now + maxLeaseMs };
}

/** How often the ticker looks: a quarter of the lease, at least 10 ms. */
export function tickIntervalMs(ackTimeoutMs: number): number {
  return Math.max(10, ackTimeoutMs / 4);
}

export interface Renewal {
  /** Offsets to extend now, per partition. */
  extend: Array<{ topic: string; partition: number; offsets: bigint[] }>;
  /** How many records were let go (held past the max lease). */
  letGo: number;
}

/**
 * Pick the held records due for an extension (past half of their lease) and give them a fresh lease,
 * in place. Those whose next lease would end after their `until` are let go (marked NEVER) instead.
 */
export function renew(held: Iterable<Held>, now: number, ackTimeoutMs: number): Renewal {
  const dueBy = now + ackTimeoutMs / 2;
  const next = now + ackTimeoutMs;
  const fresh = new Map<Lease, Lease>(); // one new Lease per old one: records of a batch stay together
  const out: Renewal = { extend: [], letGo: 0 };
  for (const { topic, partition, leases } of held) {
    const offsets: bigint[] = [];
    for (const [offset, lease] of leases) {
      if (lease.deadline > dueBy) continue;
      if (next > lease.until) {
        leases.set(offset, NEVER);
        out.letGo += 1;
        continue;
      }
      let renewed = fresh.get(lease);
      if (renewed === undefined) fresh.set(lease, (renewed = { deadline: next, until: lease.until }));
      leases.set(offset, renewed);
      offsets.push(offset);
    }
    if (offsets.length > 0) out.extend.push({ topic, partition, offsets });
  }
  return out;
}
