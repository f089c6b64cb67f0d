/** Lease management: the renewal rule (pure), and the consumer extending what it holds. */
import assert from "node:assert/strict";
import { after, test } from "node:test";
import { Server, ServerCredentials, type ServerDuplexStream } from "@grpc/grpc-js";
import { Consumer } from "../src/index";
import * as pb from "../src/gen/kafka_sidecar/v1/sidecar";
import { firstLease, type Held, NEVER, renew } from "../src/leases";
import { columnar } from "./columnar";

test("renew extends what is past half its lease and lets go past the max lease", () => {
  const old = firstLease(0, 10_000, 25_000);
  const young = firstLease(4_000, 10_000, 25_000);
  const p0: Held = { topic: "t", partition: 0, leases: new Map([[1n, old], [2n, old], [3n, old]]) };
  const p1: Held = { topic: "t", partition: 1, leases: new Map([[7n, young]]) };
  const held = [p0, p1];
  assert.deepEqual(renew(held, 4_000, 10_000), { extend: [], letGo: 0 }, "nothing past half its lease yet");

  assert.deepEqual(renew(held, 5_500, 10_000), { extend: [{ topic: "t", partition: 0, offsets: [1n, 2n, 3n] }], letGo: 0 });
  assert.deepEqual(p0.leases.get(1n), { deadline: 15_500, until: 25_000 }, "a fresh lease from now, same max lease");
  assert.equal(p0.leases.get(1n), p0.leases.get(3n), "records renewed together share one lease");

  p0.leases.delete(2n); // acked meanwhile: never extended
  assert.deepEqual(renew(held, 11_000, 10_000).extend, [
    { topic: "t", partition: 0, offsets: [1n, 3n] },
    { topic: "t", partition: 1, offsets: [7n] },
  ]);
  // A lease from 16.5 s ends at 26.5 s: past 25 s (let go), not past 29 s (extended).
  assert.deepEqual(renew(held, 16_500, 10_000), { extend: [{ topic: "t", partition: 1, offsets: [7n] }], letGo: 2 });
  assert.equal(p0.leases.get(1n), NEVER);
  assert.deepEqual(renew([{ topic: "t", partition: 2, leases: new Map([[1n, firstLease(0, 0, 1)]]) }], 1e9, 10), {
    extend: [],
    letGo: 0,
  }, "no ack timeout: never extended");
});

type Call = ServerDuplexStream<pb.ConsumeRequest, pb.ConsumeResponse>;

/** A fake sidecar with one stream that records what the client sends. */
async function fakeSidecar(): Promise<{ address: string; call: () => Promise<Call>; requests: pb.ConsumeRequest[]; stop: () => void }> {
  const server = new Server();
  const requests: pb.ConsumeRequest[] = [];
  let current: Call | undefined;
  server.addService(pb.ConsumerServiceService, {
    consume: (c: Call) => {
      current = c;
      c.on("data", (r: pb.ConsumeRequest) => requests.push(r));
      c.on("end", () => c.end());
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
  );
  const call = async (): Promise<Call> => {
    for (let i = 0; i < 500 && current === undefined; i++) await sleep(10);
    assert.ok(current, "no stream opened within 5 s");
    return current;
  };
  return { address: `127.0.0.1:${port}`, call, requests, stop: () => server.forceShutdown() };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The offsets each request with extends extends, ranges expanded. */
function extended(requests: pb.ConsumeRequest[]): bigint[][] {
  return requests
    .filter((r) => r.extends.length > 0)
    .map((r) =>
      r.extends.flatMap((po) => [
        ...po.offsets,
        ...po.ranges.flatMap(({ first, last }) => Array.from({ length: Number(last - first) + 1 }, (_, i) => first + BigInt(i))),
      ]),
    );
}

const cleanup: Array<() => Promise<void>> = [];
after(async () => {
  for (const fn of cleanup) await fn();
});

async function setup(options: ConstructorParameters<typeof Consumer>[1] = {}) {
  const fake = await fakeSidecar();
  const consumer = new Consumer(fake.address, { maxInFlight: 10, ...options }).connect();
  cleanup.push(async () => {
    await consumer.close();
    fake.stop();
  });
  return { fake, consumer, call: await fake.call() };
}

test("held records are extended in one request per tick", async () => {
  const { fake, consumer, call } = await setup();
  call.write({ event: { $case: "records", value: columnar([0n, 1n, 2n, 3n, 4n, 5n].map((offset) => ({ offset })), 200n) } });
  const batch = await consumer.receive(5000);
  consumer.ack(batch.slice(0, 2)); // finished: never extended
  await sleep(700); // three and a half leases
  const ext = extended(fake.requests);
  assert.ok(ext.length >= 3, `held records must be extended every half lease: ${ext.length} requests`);
  for (const offsets of ext) assert.deepEqual(offsets, [2n, 3n, 4n, 5n]);
  assert.ok(fake.requests.filter((r) => r.extends.length > 0).every((r) => r.extends[0].ranges.length === 1), "one range");
  assert.equal(consumer.leaseExtensions, 4 * ext.length);
  consumer.ack(batch.slice(2));
  await consumer.flush(5000);
  const seen = fake.requests.length;
  await sleep(300);
  assert.deepEqual(extended(fake.requests.slice(seen)), [], "nothing held, nothing extended");
});

test("lease management can be turned off", async () => {
  const { fake, consumer, call } = await setup({ manageLeases: false });
  call.write({ event: { $case: "records", value: columnar([{ offset: 0n }], 100n) } });
  await consumer.receive(5000);
  await sleep(400);
  assert.deepEqual(extended(fake.requests), []);
});

test("records held past the max lease are let go", async () => {
  const { fake, consumer, call } = await setup({ maxLeaseMs: 700 });
  call.write({ event: { $case: "records", value: columnar([{ offset: 0n }], 200n) } });
  await consumer.receive(5000);
  // Extended from 100 ms (half its lease) while a fresh lease ends by 700 ms, so never after 500 ms.
  await sleep(1000);
  assert.ok(extended(fake.requests).length >= 1, "extended before the max lease");
  const seen = fake.requests.length;
  await sleep(500);
  assert.deepEqual(extended(fake.requests.slice(seen)), [], "let go: no longer extended");
});

test("maxLeaseMs must be positive", () => {
  assert.throws(() => new Consumer("127.0.0.1:1", { maxLeaseMs: 0 }), RangeError);
});
