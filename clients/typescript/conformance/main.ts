/**
 * The TypeScript client's conformance app: follows the conformance driver's instructions
 * (tests/conformance/conformance_driver.py) and reports what the client does.
 *
 * Protocol: JSON lines. Instructions come on stdin ({"seq": n, "op": ...}); each is answered with
 * {"event": "ok"|"failed", "seq": n}. Records, assignment changes, rejections and a stream failure are
 * reported on stdout as they happen. End of stdin closes the consumer and exits.
 */
import { createInterface } from "node:readline";
import { type AssignmentChange, Consumer, type Record, type Rejection, SidecarError, type TopicPartition } from "../src/index";

interface Instruction {
  seq: number;
  op: string;
  address?: string;
  max_in_flight?: number;
  manage_leases?: boolean;
  max_lease_ms?: number;
  /** TLS from PEM files (mutual TLS with cert_file and key_file), and a token file. */
  tls?: { ca_file: string; cert_file?: string; key_file?: string };
  token_file?: string;
  ids?: number[];
  delay_ms?: number | null;
  reason?: string;
  topic?: string;
  partition?: number;
  offsets?: number[];
  ranges?: Array<[number, number]>;
}

const emit = (event: object): void => {
  process.stdout.write(JSON.stringify(event, (_, v) => (typeof v === "bigint" ? Number(v) : v)) + "\n");
};
const b64 = (b: Buffer | null): string | null => (b === null ? null : b.toString("base64"));
const tps = (list: TopicPartition[]): Array<[string, number]> => list.map((tp) => [tp.topic, tp.partition]);

const records = new Map<number, Record>();
let consumer: Consumer | undefined;
let receiver: Promise<void> | undefined;

async function receive(c: Consumer): Promise<void> {
  try {
    for await (const r of c) {
      const id = records.size + 1;
      records.set(id, r);
      emit({
        event: "record",
        id,
        topic: r.topic,
        partition: r.partition,
        offset: r.offset,
        key: b64(r.key),
        value: b64(r.value),
        headers: r.headers.map((h) => [h.key, b64(h.value)]),
        timestamp_ms: r.timestampMs,
        delivery_attempt: r.deliveryAttempt,
      });
    }
  } catch (e) {
    const code = e instanceof SidecarError ? e.code : 2;
    emit({ event: "error", code, message: String(e) });
  }
}

function pick(ids: number[] = []): Record[] {
  return ids.map((id) => {
    const r = records.get(id);
    if (r === undefined) throw new Error(`no record with id ${id}`);
    return r;
  });
}

async function perform(ins: Instruction): Promise<void> {
  if (ins.op === "connect") {
    consumer = new Consumer(ins.address ?? "", {
      maxInFlight: ins.max_in_flight,
      manageLeases: ins.manage_leases ?? true,
      maxLeaseMs: ins.max_lease_ms,
      tls: ins.tls && { ca: ins.tls.ca_file, cert: ins.tls.cert_file, key: ins.tls.key_file },
      tokenFile: ins.token_file,
      onAssignment: (ch: AssignmentChange) =>
        emit({ event: "assignment", assigned: tps(ch.assigned), added: tps(ch.added), revoked: tps(ch.revoked), lost: ch.lost }),
      onRejection: (r: Rejection) =>
        emit({
          event: "rejection",
          code: r.code,
          kind: r.kind,
          topic: r.topic,
          partition: r.partition,
          offsets: r.offsets,
          ranges: r.ranges,
          reason: r.reason,
        }),
    }).connect();
    receiver = receive(consumer);
    return;
  }
  const c = consumer;
  if (c === undefined) throw new Error("not connected");
  switch (ins.op) {
    case "ack":
      return c.ack(pick(ins.ids));
    case "nack":
      return c.nack(pick(ins.ids), ins.delay_ms == null ? {} : { delayMs: ins.delay_ms });
    case "extend":
      return c.extend(pick(ins.ids));
    case "reject":
      return c.reject(pick(ins.ids), ins.reason ?? "");
    case "ack_offsets":
      return c.ackOffsets(ins.topic ?? "", ins.partition ?? 0, ins.offsets ?? [], ins.ranges ?? []);
    case "flush":
      return c.flush(10_000);
    case "close":
      await c.close();
      await receiver;
      return;
    default:
      throw new Error(`unknown op ${JSON.stringify(ins.op)}`);
  }
}

async function main(): Promise<void> {
  for await (const line of createInterface({ input: process.stdin, crlfDelay: Infinity })) {
    if (!line.trim()) continue;
    const ins = JSON.parse(line) as Instruction;
    try {
      await perform(ins);
      emit({ event: "ok", seq: ins.seq });
    } catch (e) {
      emit({ event: "failed", seq: ins.seq, message: String(e) });
    }
  }
  await consumer?.close();
}

main().catch((e) => {
  process.stderr.write(`conformance: ${e instanceof Error ? e.stack : String(e)}\n`);
  process.exit(1);
});
