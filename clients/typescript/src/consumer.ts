/**
 * The consumer: one `Consume` stream to the sidecar, kept open across sidecar restarts.
 *
 * Each stream gets an epoch. Records remember the epoch of the stream that delivered them, because
 * the contract makes acks stream-local: when a stream ends, the sidecar redelivers whatever was in
 * flight on it, so acks of those records are pointless (they would only come back as rejections) and
 * must not give credit to the next stream. Records still queued locally from a dead stream are
 * discarded for the same reason: they are coming again.
 *
 * Credit is kept exact: a stream starts with `maxInFlight` credit and each record finished (acked,
 * nacked or rejected) once gives one credit back, in the same request as the ack. The client tracks
 * which records of the current stream are still in flight, so a double ack cannot give credit twice.
 *
 * The records in flight also carry their lease, so that the client can extend them for the app while
 * they are held (see leases.ts): one ticker per stream, no timer per record.
 */
import { type ChannelOptions, type ClientDuplexStream, type ServiceError, status as Status } from "@grpc/grpc-js";
import { AckBuffer, type OffsetGroup, type Range } from "./acks";
import * as pb from "./gen/kafka_sidecar/v1/sidecar";
import { DEFAULT_MAX_LEASE_MS, firstLease, type Held, NEVER, renew, tickIntervalMs } from "./leases";
import {
  type AssignmentChange,
  assignmentFromPb,
  EPOCH,
  Record,
  recordsFromPb,
  type Rejection,
  rejectionFromPb,
  SidecarError,
  type TopicPartition,
} from "./records";
import { type TlsOptions, tlsChannel, Token } from "./security";

/** Upper bound of every wait in `close()`: closing must never hang on a stuck sidecar. */
export const CLOSE_TIMEOUT_MS = 5000;

/** Statuses after which a new stream is likely to work; anything else is a bug retrying would repeat. */
const RETRYABLE = new Set([Status.UNAVAILABLE, Status.CANCELLED]);

export type Records = Record | Iterable<Record>;

export interface Logger {
  info(message: string): void;
  warn(message: string): void;
}

export interface ConsumerOptions {
  /** Records delivered and not yet acked, nacked or rejected, at most (default 1000). */
  maxInFlight?: number;
  /** Reconnect delays in ms: exponential from `initial` up to `max`, with jitter (default 50..5000). */
  reconnectBackoffMs?: { initial: number; max: number };
  /** Called on every assignment change (awaited; errors are logged, never break the stream). */
  onAssignment?: (change: AssignmentChange) => void | Promise<void>;
  /** Called for every request the sidecar did not accept (awaited; errors are logged). */
  onRejection?: (rejection: Rejection) => void | Promise<void>;
  /** Extra grpc-js channel options (override the consumer's own). */
  channelOptions?: ChannelOptions;
  /** Where reconnects and rejections are logged (default: nowhere). */
  logger?: Logger;
  /**
   * Lease management (default true): the client extends the lease of every record it holds (received,
   * not yet acked, nacked or rejected) before the sidecar's ack timeout runs out, up to `maxLeaseMs`
   * after the record arrived; then it lets the record go, and the sidecar delivers it again once its
   * lease ends. So a slow handler causes no redeliveries, and a stuck one holds its records for
   * `maxLeaseMs` at most.
   */
  manageLeases?: boolean;
  /** How long after a record arrived the client stops extending its lease (default one hour). */
  maxLeaseMs?: number;
  /**
   * TLS to the sidecar (default: plaintext, for a unix socket or loopback): `true` for TLS with Node's
   * root certificates, or `{ ca, cert, key, serverName }` (PEM Buffers or file paths; `cert` and `key`
   * for mutual TLS). Files are read by `connect()`.
   */
  tls?: TlsOptions | boolean;
  /**
   * Sent as `authorization: Bearer <token>` with every stream, over TLS or plaintext. A sidecar that
   * wants another ends the stream with UNAUTHENTICATED: a `SidecarError`, not retried.
   */
  token?: string;
  /** Like `token`, read from this file (trimmed), and read again when the file changes. */
  tokenFile?: string;
}

type Call = ClientDuplexStream<pb.ConsumeRequest, pb.ConsumeResponse>;
type Kind = "ack" | "nack" | "extend" | "reject";

const tpKey = (topic: string, partition: number): string => `${topic}\u0000${partition}`;

/** The state of one `Consume` call; thrown away whole when the call ends. */
class Stream {
  readonly pending = new AckBuffer();
  /** Records delivered and not yet finished, with their leases, per partition. */
  readonly inflight = new Map<string, Held>();
  /** The lease ticker (see leases.ts), started by the first batch with an ack timeout. */
  ticker: NodeJS.Timeout | undefined;
  queued = 0; // sequence number of the last change to `pending`
  written = 0; // sequence number of the last change written
  waiters: Array<{ seq: number; resolve: () => void }> = [];
  scheduled = false;
  writing = false;
  ending = false; // half-close after writing what is pending
  halfClosed = false;
  responded = false;

  constructor(
    readonly epoch: number,
    readonly call: Call,
  ) {}

  /** Wake the `flush()` callers waiting for writes up to `upto` (all of them if undefined). */
  release(upto?: number): void {
    const keep = [];
    for (const w of this.waiters) {
      if (upto === undefined || w.seq <= upto) w.resolve();
      else keep.push(w);
    }
    this.waiters = keep;
  }
}

function sleep(ms: number, until: Promise<void>): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([new Promise<void>((resolve) => (timer = setTimeout(resolve, ms))), until]).finally(() =>
    clearTimeout(timer),
  );
}

/** Wait for `p` at most `ms`; true if it settled in time. Leaves no timer behind. */
async function within(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  try {
    return await Promise.race([p.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Receives records from a kafka-sidecar over one gRPC stream and acks them.
 *
 * ```ts
 * const consumer = new Consumer("unix:///run/kafka-sidecar/sidecar.sock", { maxInFlight: 1000 });
 * consumer.connect();
 * for await (const record of consumer) { await handle(record); consumer.ack(record); }
 * ```
 *
 * `address` is a gRPC target: `unix:///path/to.sock` or `host:port`.
 */
export class Consumer implements AsyncIterable<Record> {
  readonly address: string;
  readonly maxInFlight: number;
  /** How many requests the sidecar rejected (see `onRejection`). */
  rejections = 0;
  /** How many times a stream was (re)opened. */
  streamsOpened = 0;
  /** How many record leases the client extended for the app (lease management). */
  leaseExtensions = 0;

  private readonly options: ConsumerOptions;
  private readonly backoff: { initial: number; max: number };
  private readonly manageLeases: boolean;
  private readonly maxLeaseMs: number;
  private readonly token: Token | undefined;
  private client: pb.ConsumerServiceClient | undefined;
  private runner: Promise<void> | undefined;
  private stream: Stream | undefined;
  private epoch = 0;
  private ready: Record[][] = [];
  private changed: Array<() => void> = [];
  private stopped = false;
  private stopSignal!: () => void;
  private readonly stopPromise = new Promise<void>((resolve) => (this.stopSignal = resolve));
  private isClosed = false;
  private error: Error | undefined;
  private currentAssignment: TopicPartition[] = [];

  constructor(address: string, options: ConsumerOptions = {}) {
    const maxInFlight = options.maxInFlight ?? 1000;
    if (!Number.isInteger(maxInFlight) || maxInFlight < 1) {
      throw new RangeError(`maxInFlight must be a whole number >= 1, got ${maxInFlight}`);
    }
    const backoff = options.reconnectBackoffMs ?? { initial: 50, max: 5000 };
    if (!(backoff.initial > 0 && backoff.initial <= backoff.max)) {
      throw new RangeError("reconnectBackoffMs must be { initial, max } with 0 < initial <= max");
    }
    const maxLeaseMs = options.maxLeaseMs ?? DEFAULT_MAX_LEASE_MS;
    if (!(maxLeaseMs > 0)) throw new RangeError(`maxLeaseMs must be > 0, got ${maxLeaseMs}`);
    if (!address) throw new RangeError("address is empty (want unix:///path.sock or host:port)");
    this.address = address;
    this.maxInFlight = maxInFlight;
    this.backoff = backoff;
    this.options = options;
    this.manageLeases = options.manageLeases ?? true;
    this.maxLeaseMs = maxLeaseMs;
    const { token, tokenFile } = options;
    this.token = token === undefined && tokenFile === undefined ? undefined : new Token(token, tokenFile);
  }

  // -- lifecycle ----------------------------------------------------------------------------------

  /**
   * Open the channel and start streaming. Returns at once: a sidecar that is not listening yet is
   * retried in the background, and records arrive when it is.
   */
  connect(): this {
    if (this.isClosed) throw new Error("consumer is closed");
    if (this.runner !== undefined) return this;
    this.token?.current(); // a missing or bad token file is the caller's error, now
    const channel = tlsChannel(this.options.tls);
    // The channel's own reconnect backoff defaults to 1 s..120 s; align it with ours, or a restarted
    // sidecar would be ignored until the channel's next attempt.
    this.client = new pb.ConsumerServiceClient(this.address, channel.credentials, {
      "grpc.max_receive_message_length": -1,
      "grpc.initial_reconnect_backoff_ms": this.backoff.initial,
      "grpc.max_reconnect_backoff_ms": this.backoff.max,
      ...channel.options,
      ...this.options.channelOptions,
    });
    this.runner = this.run();
    return this;
  }

  /**
   * Send pending acks, half-close the stream and close the channel. Unacked records are delivered
   * again by the sidecar. Each step is bounded by CLOSE_TIMEOUT_MS, so close returns even if the
   * sidecar is stuck or gone.
   */
  async close(): Promise<void> {
    if (this.isClosed) return;
    this.isClosed = true;
    this.stopped = true;
    this.stopSignal();
    this.notify();
    const s = this.stream;
    if (s !== undefined) {
      try {
        await this.flush(CLOSE_TIMEOUT_MS);
      } catch {
        this.options.logger?.warn("acks not written at close; the sidecar will redeliver");
      }
      s.ending = true;
      this.schedule(s);
    }
    if (this.runner !== undefined) {
      // The runner ends when the sidecar answers the half-close by ending the stream.
      if (!(await within(this.runner, CLOSE_TIMEOUT_MS))) {
        this.stream?.call.cancel();
        await within(this.runner, CLOSE_TIMEOUT_MS);
      }
    }
    this.client?.close();
    this.ready = [];
  }

  get closed(): boolean {
    return this.isClosed;
  }

  /** The sidecar's current assignment. */
  get assignment(): TopicPartition[] {
    return [...this.currentAssignment];
  }

  // -- receiving ----------------------------------------------------------------------------------

  /**
   * The next batch of records, as the sidecar sent it. Resolves to `[]` when `timeoutMs` passes first
   * or the consumer is closed; rejects with a SidecarError when the stream failed for good.
   */
  async receive(timeoutMs?: number): Promise<Record[]> {
    return (await this.nextBatch(timeoutMs)) ?? [];
  }

  /** Batches of records as they arrive, until the consumer is closed. */
  async *batches(): AsyncGenerator<Record[]> {
    for (let batch; (batch = await this.nextBatch()) !== null; ) yield batch;
  }

  /** Records as they arrive, until the consumer is closed. */
  async *[Symbol.asyncIterator](): AsyncGenerator<Record> {
    for (let batch; (batch = await this.nextBatch()) !== null; ) {
      for (const record of batch) {
        if (record[EPOCH] !== this.liveEpoch()) break; // its stream ended: the rest comes again
        yield record;
      }
    }
  }

  private liveEpoch(): number {
    return this.stream?.epoch ?? -1;
  }

  private notify(): void {
    const waiting = this.changed;
    this.changed = [];
    for (const wake of waiting) wake();
  }

  /** The next batch of the live stream; `[]` on timeout, `null` once closed. */
  private async nextBatch(timeoutMs?: number): Promise<Record[] | null> {
    if (this.runner === undefined && !this.isClosed) {
      throw new Error("not connected: call connect() first");
    }
    const deadline = timeoutMs === undefined ? undefined : Date.now() + timeoutMs;
    for (;;) {
      const live = this.liveEpoch();
      for (let batch; (batch = this.ready.shift()) !== undefined; ) {
        if (batch[0][EPOCH] === live) return batch;
      }
      if (this.error !== undefined) throw this.error;
      if (this.isClosed) return null;
      const changed = new Promise<void>((resolve) => this.changed.push(resolve));
      if (deadline === undefined) {
        await changed;
        continue;
      }
      const remaining = deadline - Date.now();
      if (remaining <= 0) return [];
      await sleep(remaining, changed);
    }
  }

  // -- acking -------------------------------------------------------------------------------------

  /**
   * Mark records processed: the sidecar may commit past them. Non-blocking: everything acked in one
   * event-loop turn goes out in one request, with one credit per record. Acks of records from an
   * earlier stream (before a reconnect) are dropped: the sidecar delivers those again.
   */
  ack(records: Records): void {
    this.finish(records, "ack", undefined, true);
  }

  /**
   * Ask for records to be delivered again (`deliveryAttempt` + 1), after the sidecar's retry backoff
   * or, with `delayMs`, no sooner than that.
   */
  nack(records: Records, options: { delayMs?: number } = {}): void {
    if (options.delayMs !== undefined && !(options.delayMs >= 0)) {
      throw new RangeError(`delayMs must be >= 0, got ${options.delayMs}`);
    }
    this.finish(records, "nack", options.delayMs, true);
  }

  /** Restart the lease of records still being worked on. They stay in flight: no credit comes back. */
  extend(records: Records): void {
    this.finish(records, "extend", undefined, false);
  }

  /** Send records to the dead-letter topic now, with `reason`, whatever attempts remain. */
  reject(records: Records, reason: string): void {
    this.finish(records, "reject", reason, true);
  }

  /**
   * Ack raw offsets and inclusive ranges of a partition on the current stream, as given. Credit is
   * given back for the records of the current stream they cover; anything else is for the sidecar to
   * accept or reject.
   */
  ackOffsets(topic: string, partition: number, offsets: Iterable<bigint | number>, ranges: Iterable<[bigint | number, bigint | number]> = []): void {
    this.finishRaw(topic, partition, offsets, ranges, "ack");
  }

  /** Nack raw offsets and inclusive ranges of a partition; see `ackOffsets`. */
  nackOffsets(topic: string, partition: number, offsets: Iterable<bigint | number>, ranges: Iterable<[bigint | number, bigint | number]> = []): void {
    this.finishRaw(topic, partition, offsets, ranges, "nack");
  }

  /** Resolve once everything acked so far is written to the stream (or the stream ended). */
  flush(timeoutMs?: number): Promise<void> {
    const s = this.stream;
    if (s === undefined || s.written >= s.queued) return Promise.resolve();
    const done = new Promise<void>((resolve) => s.waiters.push({ seq: s.queued, resolve }));
    if (timeoutMs === undefined) return done;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`acks not written within ${timeoutMs} ms`)), timeoutMs);
    });
    return Promise.race([done, timeout]).finally(() => clearTimeout(timer));
  }

  private finish(records: Records, kind: Kind, arg: number | string | undefined, finishes: boolean): void {
    const s = this.stream;
    if (s === undefined) return;
    const list = records instanceof Record ? [records] : records;
    let group: OffsetGroup | undefined;
    let n = 0;
    for (const r of list) {
      if (r[EPOCH] !== s.epoch) continue;
      const offsets = s.inflight.get(tpKey(r.topic, r.partition))?.leases;
      if (offsets === undefined || !offsets.has(r.offset)) continue; // already finished
      if (finishes) offsets.delete(r.offset);
      group ??= s.pending.group(kind, arg);
      group.add(r.topic, r.partition, [r.offset]);
      n += 1;
    }
    if (n > 0) {
      if (finishes) s.pending.credit += n;
      this.queue(s);
    }
  }

  private finishRaw(
    topic: string,
    partition: number,
    rawOffsets: Iterable<bigint | number>,
    rawRanges: Iterable<[bigint | number, bigint | number]>,
    kind: "ack" | "nack",
  ): void {
    const offsets = [...rawOffsets].map((o) => BigInt(o));
    const ranges = [...rawRanges].map(([f, l]): Range => [BigInt(f), BigInt(l)]);
    const s = this.stream;
    if (s === undefined || (offsets.length === 0 && ranges.length === 0)) return;
    const inflight = s.inflight.get(tpKey(topic, partition))?.leases ?? new Map<bigint, unknown>();
    let covered = 0;
    for (const o of [...inflight.keys()]) {
      if (offsets.includes(o) || ranges.some(([f, l]) => f <= o && o <= l)) {
        inflight.delete(o);
        covered += 1;
      }
    }
    s.pending.group(kind).add(topic, partition, offsets, ranges);
    s.pending.credit += covered;
    this.queue(s);
  }

  // -- the stream ---------------------------------------------------------------------------------

  private queue(s: Stream): void {
    s.queued += 1;
    this.schedule(s);
  }

  /** Write at the end of this event-loop turn, so everything buffered in the turn is one request. */
  private schedule(s: Stream): void {
    if (s.scheduled) return;
    s.scheduled = true;
    setImmediate(() => {
      s.scheduled = false;
      this.pump(s);
    });
  }

  private pump(s: Stream): void {
    if (s.writing || s.halfClosed || this.stream !== s) return;
    if (!s.pending.empty) {
      const seq = s.queued;
      const request = s.pending.take();
      s.writing = true;
      s.call.write(request, () => {
        s.writing = false;
        s.written = seq;
        s.release(seq);
        this.pump(s);
      });
      return;
    }
    if (s.ending) {
      s.halfClosed = true;
      s.call.end();
    }
  }

  /** Open streams one after the other until closed or until one fails for good. */
  private async run(): Promise<void> {
    let attempt = 0;
    while (!this.stopped) {
      this.epoch += 1;
      let metadata;
      try {
        metadata = this.token?.metadata();
      } catch (e) {
        // The token file went away or went bad: no stream can work.
        this.fail(new SidecarError(Status.UNAUTHENTICATED, (e as Error).message));
        return;
      }
      const s = new Stream(this.epoch, metadata ? this.client!.consume(metadata) : this.client!.consume());
      let reason = "the sidecar ended the stream";
      try {
        await this.serve(s);
      } catch (e) {
        if (this.stopped) break;
        if (e instanceof SidecarError) {
          // Raised here, not by the sidecar: a batch the client cannot read (see recordsFromPb). Another
          // stream would get the same, so it fails for good like a non-retryable status.
          this.fail(e);
          return;
        }
        const err = e as Partial<ServiceError>;
        if (typeof err.code !== "number") {
          this.fail(e instanceof Error ? e : new Error(String(e)));
          return;
        }
        if (!RETRYABLE.has(err.code)) {
          this.fail(new SidecarError(err.code, err.details ?? ""));
          return;
        }
        reason = `${Status[err.code]}: ${err.details}`;
      }
      if (this.stopped) break;
      if (s.responded) attempt = 0;
      let delay = Math.min(this.backoff.max, this.backoff.initial * 2 ** attempt);
      delay = delay / 2 + (Math.random() * delay) / 2; // jitter: uniform in [delay/2, delay]
      attempt += 1;
      this.options.logger?.info(`stream to ${this.address} ended (${reason}); reconnecting in ${Math.round(delay)} ms`);
      await sleep(delay, this.stopPromise);
    }
  }

  private fail(error: Error): void {
    this.error = error;
    this.notify();
  }

  /** Run one stream: grant the initial credit, then read until it ends. */
  private async serve(s: Stream): Promise<void> {
    this.stream = s;
    this.streamsOpened += 1;
    s.pending.credit = this.maxInFlight;
    this.queue(s);
    // The status arrives through the iteration below; this keeps a late 'error' (say, of a write
    // after the call ended) from being an unhandled event that would crash the process.
    s.call.on("error", () => {});
    try {
      for await (const response of s.call as AsyncIterable<pb.ConsumeResponse>) {
        s.responded = true;
        await this.handle(s, response);
      }
    } finally {
      this.stream = undefined;
      clearInterval(s.ticker);
      s.release();
      s.call.cancel();
      this.notify();
    }
  }

  private async handle(s: Stream, response: pb.ConsumeResponse): Promise<void> {
    const event = response.event;
    if (event?.$case === "records") {
      // Throws a SidecarError on a malformed batch, which ends the stream and fails the consumer.
      const batch = recordsFromPb(event.value, s.epoch);
      const ackTimeoutMs = Number(event.value.ackTimeoutMs);
      const managed = this.manageLeases && ackTimeoutMs > 0;
      const lease = managed ? firstLease(performance.now(), ackTimeoutMs, this.maxLeaseMs) : NEVER;
      for (const r of batch) {
        const key = tpKey(r.topic, r.partition);
        let held = s.inflight.get(key);
        if (held === undefined) s.inflight.set(key, (held = { topic: r.topic, partition: r.partition, leases: new Map() }));
        held.leases.set(r.offset, lease);
      }
      if (managed && s.ticker === undefined) {
        s.ticker = setInterval(() => this.keepLeases(s, ackTimeoutMs), tickIntervalMs(ackTimeoutMs));
        s.ticker.unref(); // the stream keeps the process alive, not this
      }
      if (batch.length > 0) {
        this.ready.push(batch);
        this.notify();
      }
    } else if (event?.$case === "assignment") {
      const change = assignmentFromPb(event.value);
      this.currentAssignment = change.assigned;
      await this.callback(this.options.onAssignment, change);
    } else if (event?.$case === "rejection") {
      const rejection = rejectionFromPb(event.value);
      this.rejections += 1;
      this.options.logger?.warn(
        `sidecar rejected ${rejection.kind} of ${rejection.topic}[${rejection.partition}]: ${rejection.reason}`,
      );
      await this.callback(this.options.onRejection, rejection);
    }
  }

  /** The stream's lease ticker: extend, in one request, every held record past half of its lease. */
  private keepLeases(s: Stream, ackTimeoutMs: number): void {
    if (this.stream !== s) return;
    const { extend, letGo } = renew(s.inflight.values(), performance.now(), ackTimeoutMs);
    if (letGo > 0) {
      this.options.logger?.warn(
        `${letGo} records held longer than maxLeaseMs (${this.maxLeaseMs}) are no longer extended; ` +
          "the sidecar delivers them again when their lease ends",
      );
    }
    if (extend.length === 0) return;
    const group = s.pending.group("extend");
    for (const { topic, partition, offsets } of extend) {
      group.add(topic, partition, offsets);
      this.leaseExtensions += offsets.length;
    }
    this.queue(s);
  }

  /** Run a user callback; its errors are logged, never allowed to break the stream. */
  private async callback<T>(fn: ((arg: T) => void | Promise<void>) | undefined, arg: T): Promise<void> {
    if (fn === undefined) return;
    try {
      await fn(arg);
    } catch (e) {
      this.options.logger?.warn(`callback raised: ${e instanceof Error ? e.stack : String(e)}`);
    }
  }
}
