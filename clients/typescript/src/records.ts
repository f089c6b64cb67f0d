/**
 * The plain values the client hands to the app, converted once from the wire messages, so the app
 * never touches protobuf objects and the contract's "unset means null" rules (key, value, header
 * value) are applied in one place.
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

  constructor(p: pb.Record, ackTimeoutMs: number, epoch: number) {
    this.topic = p.topic;
    this.partition = p.partition;
    this.offset = p.offset;
    this.key = p.key ?? null;
    this.value = p.value ?? null;
    this.headers = p.headers.map((h) => ({ key: h.key, value: h.value ?? null }));
    this.timestampMs = Number(p.timestampMs);
    this.timestampType = p.timestampType;
    this.deliveryAttempt = p.deliveryAttempt;
    this.ackTimeoutMs = ackTimeoutMs;
    this[EPOCH] = epoch;
  }
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
 * client sent a malformed request (a bug in the client or in raw `ackOffsets` use); others are
 * unexpected. `code` is the gRPC status.
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
