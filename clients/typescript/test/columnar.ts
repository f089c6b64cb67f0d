/**
 * Test helper: lay simple records out as the sidecar does (PartitionRecords in the contract), so tests
 * can say what they send record by record and still exercise the columnar decoding.
 */
import * as pb from "../src/gen/kafka_sidecar/v1/sidecar";

/** A record as a test states it; unset fields default like the sidecar's (unset key/value: null). */
export interface TestRecord {
  topic?: string;
  partition?: number;
  offset?: bigint;
  key?: Buffer | null;
  value?: Buffer | null;
  headers?: Array<[string, Buffer | null]>;
  timestampMs?: bigint;
  timestampType?: pb.TimestampType;
  deliveryAttempt?: number;
}

/**
 * A batch of `records`, grouped by partition in the order each partition first appears. Like the
 * sidecar, it leaves the header columns empty for a partition none of whose records has a header.
 */
export function columnar(records: TestRecord[], ackTimeoutMs = 0n): pb.RecordBatch {
  const byPartition = new Map<string, { columns: pb.PartitionRecords; rows: TestRecord[] }>();
  for (const r of records) {
    const topic = r.topic ?? "t";
    const partition = r.partition ?? 0;
    const key = `${topic}\u0000${partition}`;
    let entry = byPartition.get(key);
    if (entry === undefined) {
      byPartition.set(key, (entry = { columns: pb.PartitionRecords.fromPartial({ topic, partition }), rows: [] }));
    }
    entry.rows.push(r);
  }
  const partitions = [...byPartition.values()].map(({ columns: c, rows }) => {
    const anyHeaders = rows.some((r) => (r.headers ?? []).length > 0);
    rows.forEach((r, i) => {
      c.offsets.push(r.offset ?? 0n);
      pushNullable(c.keys, c.nullKeys, r.key ?? null, i);
      pushNullable(c.values, c.nullValues, r.value ?? null, i);
      c.timestampsMs.push(r.timestampMs ?? 0n);
      c.timestampTypes.push(r.timestampType ?? pb.TimestampType.TIMESTAMP_TYPE_CREATE_TIME);
      c.deliveryAttempts.push(r.deliveryAttempt ?? 1);
      if (!anyHeaders) return;
      const headers = r.headers ?? [];
      c.headerCounts.push(headers.length);
      for (const [k, v] of headers) {
        c.headerKeys.push(k);
        pushNullable(c.headerValues, c.nullHeaderValues, v, c.headerKeys.length - 1);
      }
    });
    return c;
  });
  return { ackTimeoutMs, partitions };
}

function pushNullable(column: Buffer[], nulls: number[], item: Buffer | null, index: number): void {
  column.push(item ?? Buffer.alloc(0));
  if (item === null) nulls.push(index);
}

/** `batch` after a trip through the wire encoding, as the client receives it. */
export function overTheWire(batch: pb.RecordBatch): pb.RecordBatch {
  return pb.RecordBatch.decode(pb.RecordBatch.encode(batch).finish());
}
