/**
 * The plain values the client hands to the app, converted once from the wire messages, so the app
 * never touches protobuf objects and the contract's rules (records laid out by column, nulls listed
 * by index) are applied in one place.
 */
import { status as Status } from "@grpc/grpc-js";
import * as pb from "./gen/kafka_sidecar/v1/sidecar";

export { TimestampType } from "./gen/kafka_sidecar/v1/sidecar";

/** Which stream delivered a record: acks are stream-local (see Consumer). */
export const EPOCH: unique symbol = Symbol("kafka-sidecar stream epoch");

export interface TopicPartition {
  readonly topic: string;
  readonly partition: number;
}

export interface Header {
  readonly key: string;
  /** null for a null header value (distinct from an empty Buffer). */
  readonly value: Buffer | null;
}

/**
 * A Kafka record delivered by the sidecar. Ack, nack or reject it when done.
 *
 * `key`, `value` and a header's value are `null` for Kafka nulls, distinct from an empty Buffer.
 * `deliveryAttempt` is 1 on first delivery and grows on each redelivery: delivery is at-least-once,
 * so processing should tolerate duplicates. Offsets are `bigint`: Kafka offsets are 64-bit.
 */
export class Record {
  readonly topic: string;
  readonly partition: number;
  readonly offset: bigint;
  readonly key: Buffer | null;
  readonly value: Buffer | null;
  readonly headers: readonly Header[];
  /** Milliseconds since the Unix epoch; 0 when the broker gave none. */
  readonly timestampMs: number;
  readonly timestampType: pb.TimestampType;
  readonly deliveryAttempt: number;
  /** The lease of the batch the record came in (0: none): finish or extend it within that time. */
  readonly ackTimeoutMs: number;
  /** @internal */
  readonly [EPOCH]: number;

  /** @internal Records come from `recordsFromPb`; `epoch` is the stream that delivered it. */
  constructor(fields: Omit<Record, typeof EPOCH>, epoch: number) {
    this.topic = fields.topic;
    this.partition = fields.partition;
    this.offset = fields.offset;
    this.key = fields.key;
    this.value = fields.value;
    this.headers = fields.headers;
    this.timestampMs = fields.timestampMs;
    this.timestampType = fields.timestampType;
    this.deliveryAttempt = fields.deliveryAttempt;
    this.ackTimeoutMs = fields.ackTimeoutMs;
    this[EPOCH] = epoch;
  }
}

/**
 * The records of a batch delivered on the stream of `epoch`: partition after partition, each in
 * offset order, as the sidecar sent them.
 *
 * Throws a SidecarError (INTERNAL) when a partition's columns do not line up. That is a sidecar bug,
 * and the client treats it as it treats a response it cannot parse at all: the stream fails for good.
 * Decoding it anyway would hand the app records with fields that belong to other records, or
 * undefined. The whole batch is refused, so no record of it reaches the app.
 */
export function recordsFromPb(batch: pb.RecordBatch, epoch: number): Record[] {
  const ackTimeoutMs = Number(batch.ackTimeoutMs);
  const records: Record[] = [];
  for (const p of batch.partitions) {
    const problem = misalignment(p);
    if (problem !== undefined) {
      throw new SidecarError(Status.INTERNAL, `malformed record batch for ${p.topic}[${p.partition}]: ${problem}`);
    }
    const keys = withNulls(p.keys, p.nullKeys);
    const values = withNulls(p.values, p.nullValues);
    const headerValues = withNulls(p.headerValues, p.nullHeaderValues);
    // `headerCounts` is empty when no record of the partition has a header; otherwise record i owns
    // the next headerCounts[i] entries of headerKeys/headerValues.
    const counted = p.headerCounts.length > 0;
    let h = 0;
    for (let i = 0; i < p.offsets.length; i++) {
      const count = counted ? p.headerCounts[i] : 0;
      const headers: Header[] = [];
      for (let j = 0; j < count; j++, h++) headers.push({ key: p.headerKeys[h], value: headerValues[h] });
      const record = new Record(
        {
          topic: p.topic,
          partition: p.partition,
          offset: p.offsets[i],
          key: keys[i],
          value: values[i],
          headers,
          timestampMs: Number(p.timestampsMs[i]),
          timestampType: p.timestampTypes[i],
          deliveryAttempt: p.deliveryAttempts[i],
          ackTimeoutMs,
        },
        epoch,
      );
      records.push(record);
    }
  }
  return records;
}

/** Why the columns of `p` do not line up as the contract says, or undefined if they do. */
function misalignment(p: pb.PartitionRecords): string | undefined {
  const n = p.offsets.length;
  const columns: Array<[string, number]> = [
    ["keys", p.keys.length],
    ["values", p.values.length],
    ["timestamps_ms", p.timestampsMs.length],
    ["timestamp_types", p.timestampTypes.length],
    ["delivery_attempts", p.deliveryAttempts.length],
  ];
  for (const [name, length] of columns) {
    if (length !== n) return `${n} offsets but ${length} ${name}`;
  }
  if (p.headerCounts.length !== 0 && p.headerCounts.length !== n) {
    return `${n} offsets but ${p.headerCounts.length} header_counts`;
  }
  // With no header counts there are no headers: the sum is then 0.
  const headers = p.headerCounts.reduce((sum, count) => sum + count, 0);
  if (p.headerKeys.length !== headers || p.headerValues.length !== headers) {
    return `header_counts add up to ${headers}, with ${p.headerKeys.length} header_keys and ${p.headerValues.length} header_values`;
  }
  const nulls: Array<[string, number[], number]> = [
    ["null_keys", p.nullKeys, n],
    ["null_values", p.nullValues, n],
    ["null_header_values", p.nullHeaderValues, headers],
  ];
  for (const [name, indexes, size] of nulls) {
    const bad = indexes.find((i) => !(Number.isInteger(i) && i >= 0 && i < size));
    if (bad !== undefined) return `${name} has index ${bad}, out of range for ${size} entries`;
  }
  return undefined;
}

/** `column` with the entries at `nulls` replaced by null: the contract's way to tell null from empty. */
function withNulls(column: Buffer[], nulls: number[]): Array<Buffer | null> {
  const out: Array<Buffer | null> = column.slice();
  for (const i of nulls) out[i] = null;
  return out;
}

/**
 * The sidecar's partitions changed, or a stream opened (then only `assigned` is set). `lost` means
 * the group moved on without the sidecar: acks of the `revoked` partitions' records are rejected.
 */
export interface AssignmentChange {
  readonly assigned: TopicPartition[];
  readonly added: TopicPartition[];
  readonly revoked: TopicPartition[];
  readonly lost: boolean;
}

function partitions(tps: pb.TopicPartitions[]): TopicPartition[] {
  return tps.flatMap((tp) => tp.partitions.map((partition) => ({ topic: tp.topic, partition })));
}

export function assignmentFromPb(p: pb.AssignmentChange): AssignmentChange {
  return {
    assigned: partitions(p.assigned),
    added: partitions(p.added),
    revoked: partitions(p.revoked),
    lost: p.lost,
  };
}

export type RequestKind = "ack" | "nack" | "extend" | "reject";

/**
 * An ack, nack, extend or reject the sidecar did not accept; the stream stays open. `code` is a gRPC
 * status: NOT_FOUND (5) when the offsets were not in flight on the stream, DEADLINE_EXCEEDED (4) when
 * their lease expired, FAILED_PRECONDITION (9) when the partition is not assigned to the sidecar. The
 * records are (or were) delivered again, so a rejection is informational.
 */
export interface Rejection {
  readonly code: Status;
  readonly reason: string;
  readonly topic: string;
  readonly partition: number;
  readonly kind: RequestKind;
  readonly offsets: bigint[];
  readonly ranges: Array<[bigint, bigint]>;
}

const KINDS: { [k: number]: RequestKind } = {
  [pb.RequestKind.REQUEST_KIND_ACK]: "ack",
  [pb.RequestKind.REQUEST_KIND_NACK]: "nack",
  [pb.RequestKind.REQUEST_KIND_EXTEND]: "extend",
  [pb.RequestKind.REQUEST_KIND_REJECT]: "reject",
};

export function rejectionFromPb(p: pb.Rejection): Rejection {
  const o = p.offsets;
  return {
    code: p.code as Status,
    reason: p.reason,
    topic: o?.topic ?? "",
    partition: o?.partition ?? 0,
    // An older sidecar sets only `nack`.
    kind: KINDS[p.kind] ?? (p.nack ? "nack" : "ack"),
    offsets: [...(o?.offsets ?? [])],
    ranges: (o?.ranges ?? []).map((r): [bigint, bigint] => [r.first, r.last]),
  };
}

/**
 * The sidecar ended the stream with a status that retrying would not fix: INVALID_ARGUMENT means the
 * client sent a malformed request (a bug in the client or in raw `ackOffsets` use); INTERNAL also comes
 * when the client could not read what the sidecar sent (a message it cannot parse, or a record batch
 * whose columns do not line up); others are unexpected. `code` is the gRPC status.
 */
export class SidecarError extends Error {
  constructor(
    readonly code: Status,
    readonly details: string,
  ) {
    super(`sidecar ended the stream with ${Status[code] ?? code}: ${details}`);
    this.name = "SidecarError";
  }
}
