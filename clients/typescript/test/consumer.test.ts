/**
 * The consumer against an in-process fake sidecar (a grpc-js server whose streams the test plays by
 * hand). The real sidecar is covered by the conformance suite (tests/conformance).
 */
import assert from "node:assert/strict";
import { after, test } from "node:test";
import { Server, ServerCredentials, type ServerDuplexStream, status } from "@grpc/grpc-js";
import { Consumer, SidecarError } from "../src/index";
import * as pb from "../src/gen/kafka_sidecar/v1/sidecar";
import { columnar, type TestRecord } from "./columnar";

type Call = ServerDuplexStream<pb.ConsumeRequest, pb.ConsumeResponse>;

class FakeStream {
  readonly requests: pb.ConsumeRequest[] = [];
  halfClosed = false;
  cancelled = false;
  private wake: (() => void) | undefined;

  constructor(readonly call: Call) {
    call.on("cancelled", () => (this.cancelled = true));
    call.on("data", (r: pb.ConsumeRequest) => {
      this.requests.push(r);
      this.wake?.();
    });
    call.on("end", () => {
      this.halfClosed = true;
      this.wake?.();
      call.end(); // like the sidecar: a half-close ends the stream
    });
  }

  async next(): Promise<pb.ConsumeRequest | null> {
    const deadline = Date.now() + 5000;
    while (this.requests.length === 0 && !this.halfClosed) {
      assert.ok(Date.now() < deadline, "no request within 5 s");
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        setTimeout(resolve, 50);
      });
    }
    return this.requests.shift() ?? null;
  }

  send(...records: TestRecord[]): void {
    this.sendBatch(columnar(records));
  }

  sendBatch(batch: pb.RecordBatch): void {
    this.call.write({ event: { $case: "records", value: batch } });
  }
}

async function fakeSidecar(): Promise<{ address: string; streams: () => Promise<FakeStream>; stop: () => void }> {
  const server = new Server();
  const pending: FakeStream[] = [];
  server.addService(pb.ConsumerServiceService, { consume: (call: Call) => void pending.push(new FakeStream(call)) });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
  );
  const streams = async (): Promise<FakeStream> => {
    const deadline = Date.now() + 5000;
    while (pending.length === 0) {
      assert.ok(Date.now() < deadline, "no stream opened within 5 s");
      await new Promise((r) => setTimeout(r, 10));
    }
    return pending.shift()!;
  };
  return { address: `127.0.0.1:${port}`, streams, stop: () => server.forceShutdown() };
}

const consumers: Consumer[] = [];
const servers: Array<() => void> = [];
after(async () => {
  await Promise.all(consumers.map((c) => c.close()));
  servers.forEach((stop) => stop());
});

async function setup() {
  const fake = await fakeSidecar();
  servers.push(fake.stop);
  const consumer = new Consumer(fake.address, { maxInFlight: 10, reconnectBackoffMs: { initial: 5, max: 20 } }).connect();
  consumers.push(consumer);
  return { fake, consumer };
}

test("credit, one coalesced request for a bulk ack, null distinct from empty", async () => {
  const { fake, consumer } = await setup();
  const s = await fake.streams();
  assert.equal((await s.next())?.credit, 10n);
  s.send(
    { topic: "t", offset: 0n, value: Buffer.alloc(0) },
    { topic: "t", offset: 1n },
    { topic: "t", offset: 2n },
    { topic: "t", offset: 3n, key: Buffer.from("k"), headers: [["n", null], ["e", Buffer.alloc(0)]] },
  );
  const batch = await consumer.receive(5000);
  assert.equal(batch.length, 4);
  assert.equal(batch[0].key, null);
  assert.deepEqual(batch[0].value, Buffer.alloc(0));
  assert.equal(batch[1].value, null);
  assert.deepEqual(batch[2].headers, []);
  assert.deepEqual(batch[3].headers, [{ key: "n", value: null }, { key: "e", value: Buffer.alloc(0) }]);
  consumer.ack(batch.slice(0, 3));
  consumer.ack(batch[0]); // twice: no second credit
  consumer.nack(batch[3]);
  await consumer.flush(5000);
  const req = await s.next();
  assert.equal(req?.credit, 4n);
  assert.deepEqual(req?.acks, [{ topic: "t", partition: 0, offsets: [], ranges: [{ first: 0n, last: 2n }] }]);
  assert.deepEqual(req?.nacks, [{ topic: "t", partition: 0, offsets: [3n], ranges: [] }]);
  await consumer.close();
  assert.equal(await s.next(), null, "close half-closes");
  assert.equal(s.halfClosed, true);
});

test("a broken stream reconnects with fresh credit and drops acks of its records", async () => {
  const { fake, consumer } = await setup();
  const s = await fake.streams();
  await s.next();
  s.send({ topic: "t", offset: 0n, deliveryAttempt: 1 });
  const [old] = await consumer.receive(5000);
  s.call.emit("error", Object.assign(new Error("restarting"), { code: status.UNAVAILABLE, details: "restarting" }));
  const s2 = await fake.streams();
  assert.equal((await s2.next())?.credit, 10n);
  consumer.ack(old);
  s2.send({ topic: "t", offset: 0n, deliveryAttempt: 2 });
  const [again] = await consumer.receive(5000);
  assert.equal(again.deliveryAttempt, 2);
  consumer.ack(again);
  const req = await s2.next();
  assert.equal(req?.credit, 1n);
  assert.equal(req?.acks.length, 1);
  assert.equal(consumer.streamsOpened, 2);
});

test("INVALID_ARGUMENT surfaces as a SidecarError and is not retried", async () => {
  const { fake, consumer } = await setup();
  const s = await fake.streams();
  await s.next();
  s.call.emit("error", Object.assign(new Error("bad range"), { code: status.INVALID_ARGUMENT, details: "bad range 4..2" }));
  await assert.rejects(consumer.receive(5000), (e: unknown) => e instanceof SidecarError && e.code === status.INVALID_ARGUMENT);
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(consumer.streamsOpened, 1);
});

test("a malformed batch fails the consumer with INTERNAL, none of it delivered, and is not retried", async () => {
  const { fake, consumer } = await setup();
  const s = await fake.streams();
  await s.next();
  const batch = columnar([{ offset: 0n }, { offset: 1n }, { partition: 1, offset: 5n }]);
  batch.partitions[1].deliveryAttempts.pop();
  s.sendBatch(batch);
  await assert.rejects(
    consumer.receive(5000),
    (e: unknown) => e instanceof SidecarError && e.code === status.INTERNAL && e.details.includes("t[1]"),
  );
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(s.cancelled, true, "the stream is cancelled, so the sidecar redelivers its records");
  assert.equal(consumer.streamsOpened, 1);
});
