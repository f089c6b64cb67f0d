/**
 * Coalescing of acks, nacks, extends and rejects into as few, as small, requests as possible.
 *
 * An app acks record by record, often thousands per second. Sending each ack on its own would cost a
 * request (and a sidecar wake-up) per record, so the client buffers everything, with the credit it
 * gives back, and sends it as one ConsumeRequest per event-loop turn, with each partition's contiguous
 * offsets compressed into inclusive ranges (a batch of 500 acked records is one range).
 *
 * Ranges are only formed from offsets of the same request kind: the sidecar applies a range to every
 * record in flight whose offset lies in it, so a range spanning an offset the app has not finished
 * (say, a nacked record redelivered meanwhile) would ack a record the app never processed.
 */
import * as pb from "./gen/kafka_sidecar/v1/sidecar";

export type Range = [bigint, bigint];

const byValue = (a: bigint, b: bigint): number => (a < b ? -1 : a > b ? 1 : 0);

/** Split offsets into lone offsets and inclusive ranges of contiguous runs, sorted, without duplicates. */
export function compress(offsets: Iterable<bigint>): { singles: bigint[]; ranges: Range[] } {
  const sorted = [...new Set(offsets)].sort(byValue);
  const singles: bigint[] = [];
  const ranges: Range[] = [];
  if (sorted.length === 0) return { singles, ranges };
  let first = sorted[0];
  let last = first;
  const emit = (): void => {
    if (first === last) singles.push(first);
    else ranges.push([first, last]);
  };
  for (const o of sorted.slice(1)) {
    if (o === last + 1n) {
      last = o;
      continue;
    }
    emit();
    first = last = o;
  }
  emit();
  return { singles, ranges };
}

const tpKey = (topic: string, partition: number): string => `${topic}\u0000${partition}`;

/** Offsets and raw ranges of one request kind, per partition. */
export class OffsetGroup {
  private readonly parts = new Map<string, { topic: string; partition: number; offsets: bigint[]; ranges: Range[] }>();

  add(topic: string, partition: number, offsets: Iterable<bigint>, ranges: Iterable<Range> = []): void {
    const key = tpKey(topic, partition);
    let part = this.parts.get(key);
    if (part === undefined) {
      part = { topic, partition, offsets: [], ranges: [] };
      this.parts.set(key, part);
    }
    part.offsets.push(...offsets);
    part.ranges.push(...ranges);
  }

  get empty(): boolean {
    return this.parts.size === 0;
  }

  toPb(): pb.PartitionOffsets[] {
    const parts = [...this.parts.values()].sort((a, b) =>
      a.topic !== b.topic ? (a.topic < b.topic ? -1 : 1) : a.partition - b.partition,
    );
    return parts.map((part) => {
      const { singles, ranges } = compress(part.offsets);
      return {
        topic: part.topic,
        partition: part.partition,
        offsets: singles,
        ranges: [...ranges, ...part.ranges].map(([first, last]) => ({ first, last })),
      };
    });
  }
}

function getOrAdd<K>(map: Map<K, OffsetGroup>, key: K): OffsetGroup {
  let g = map.get(key);
  if (g === undefined) {
    g = new OffsetGroup();
    map.set(key, g);
  }
  return g;
}

/**
 * What is to be sent on a stream and has not been yet. `take()` empties it into one request, so
 * everything added between two writes travels together.
 */
export class AckBuffer {
  credit = 0;
  private acks = new OffsetGroup();
  private nacks = new OffsetGroup();
  private extends = new OffsetGroup();
  private delayed = new Map<number, OffsetGroup>();
  private rejects = new Map<string, OffsetGroup>();

  get empty(): boolean {
    return (
      this.credit === 0 &&
      this.acks.empty &&
      this.nacks.empty &&
      this.extends.empty &&
      this.delayed.size === 0 &&
      this.rejects.size === 0
    );
  }

  /** The group of one request kind; `arg` is the delay (ms) of a delayed nack or a reject's reason. */
  group(kind: "ack" | "nack" | "extend" | "reject", arg?: number | string): OffsetGroup {
    if (kind === "ack") return this.acks;
    if (kind === "extend") return this.extends;
    if (kind === "nack" && arg === undefined) return this.nacks;
    if (kind === "nack") return getOrAdd(this.delayed, Math.max(0, Math.round(Number(arg))));
    return getOrAdd(this.rejects, String(arg ?? ""));
  }

  /** Return everything buffered as one request and empty the buffer. */
  take(): pb.ConsumeRequest {
    const request: pb.ConsumeRequest = {
      credit: BigInt(this.credit),
      acks: this.acks.toPb(),
      nacks: this.nacks.toPb(),
      extends: this.extends.toPb(),
      delayedNacks: [...this.delayed.entries()]
        .sort(([a], [b]) => a - b)
        .flatMap(([delayMs, g]) => g.toPb().map((offsets) => ({ offsets, delayMs: BigInt(delayMs) }))),
      rejects: [...this.rejects.entries()]
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
        .flatMap(([reason, g]) => g.toPb().map((offsets) => ({ offsets, reason }))),
    };
    this.credit = 0;
    this.acks = new OffsetGroup();
    this.nacks = new OffsetGroup();
    this.extends = new OffsetGroup();
    this.delayed = new Map();
    this.rejects = new Map();
    return request;
  }
}
