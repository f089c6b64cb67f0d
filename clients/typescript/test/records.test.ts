/**
 * Decoding of the columnar record batches (PartitionRecords in the contract) into Records. Batches
 * go through the wire encoding first, so an empty entry of a repeated bytes field is tested as the
 * client receives it.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { status } from "@grpc/grpc-js";
import * as pb from "../src/gen/kafka_sidecar/v1/sidecar";
import { EPOCH, recordsFromPb, SidecarError } from "../src/records";
import { columnar, overTheWire, type TestRecord } from "./columnar";

const decode = (records: TestRecord[], ackTimeoutMs = 0n) => recordsFromPb(overTheWire(columnar(records, ackTimeoutMs)), 7);
const empty = Buffer.alloc(0);

test("every field of a record, the batch's lease and the stream's epoch", () => {
  const [r] = decode(
    [
      {
        topic: "orders",
        partition: 3,
        offset: 2n ** 40n,
        key: Buffer.from("k"),
        value: Buffer.from("v"),
        timestampMs: 1_700_000_000_123n,
        timestampType: pb.TimestampType.TIMESTAMP_TYPE_LOG_APPEND_TIME,
        deliveryAttempt: 4,
      },
    ],
    30_000n,
  );
  assert.equal(r.topic, "orders");
  assert.equal(r.partition, 3);
  assert.equal(r.offset, 2n ** 40n);
  assert.deepEqual(r.key, Buffer.from("k"));
  assert.deepEqual(r.value, Buffer.from("v"));
  assert.deepEqual(r.headers, []);
  assert.equal(r.timestampMs, 1_700_000_000_123);
  assert.equal(r.timestampType, pb.TimestampType.TIMESTAMP_TYPE_LOG_APPEND_TIME);
  assert.equal(r.deliveryAttempt, 4);
  assert.equal(r.ackTimeoutMs, 30_000);
  assert.equal(r[EPOCH], 7);
});

test("null and empty keys, values and header values stay distinct", () => {
  const records = decode([
    { offset: 0n, key: null, value: empty, headers: [["a", null]] },
    { offset: 1n, key: empty, value: null, headers: [["b", empty]] },
    { offset: 2n, key: null, value: null, headers: [["c", null], ["d", Buffer.from("x")]] },
    { offset: 3n, key: empty, value: empty },
  ]);
  assert.deepEqual(
    records.map((r) => [r.key, r.value]),
    [
      [null, empty],
      [empty, null],
      [null, null],
      [empty, empty],
    ],
  );
  assert.deepEqual(
    records.map((r) => r.headers),
    [
      [{ key: "a", value: null }],
      [{ key: "b", value: empty }],
      [
        { key: "c", value: null },
        { key: "d", value: Buffer.from("x") },
      ],
      [],
    ],
  );
});

test("headers are split by header_counts, records without headers included", () => {
  const h = (key: string, value: string): [string, Buffer] => [key, Buffer.from(value)];
  const batch = columnar([
    { offset: 0n },
    { offset: 1n, headers: [h("a", "1"), h("b", "2")] },
    { offset: 2n },
    { offset: 3n },
    { offset: 4n, headers: [h("c", "3")] },
    { offset: 5n, headers: [h("a", "4"), h("a", "5"), h("d", "6")] },
    { offset: 6n },
  ]);
  assert.deepEqual(batch.partitions[0].headerCounts, [0, 2, 0, 0, 1, 3, 0], "the helper lays them out as the contract says");
  const records = recordsFromPb(overTheWire(batch), 1);
  const seen = records.map((r) => r.headers.map((x) => `${x.key}=${x.value?.toString()}`));
  assert.deepEqual(seen, [[], ["a=1", "b=2"], [], [], ["c=3"], ["a=4", "a=5", "d=6"], []]);
});

test("several partitions in one batch: partition after partition, each with its own columns", () => {
  const batch = columnar([
    { topic: "a", partition: 0, offset: 10n, key: Buffer.from("a0") },
    { topic: "a", partition: 0, offset: 11n, key: null },
    { topic: "a", partition: 1, offset: 5n, headers: [["h", null]] },
    { topic: "b", partition: 0, offset: 0n, value: Buffer.from("b0") },
    { topic: "a", partition: 1, offset: 6n, deliveryAttempt: 2 },
  ]);
  assert.equal(batch.partitions.length, 3);
  assert.deepEqual(batch.partitions[0].headerCounts, [], "no header in a[0]: no header columns");
  const records = recordsFromPb(overTheWire(batch), 1);
  assert.deepEqual(
    records.map((r) => [r.topic, r.partition, r.offset, r.key?.toString() ?? null, r.value?.toString() ?? null, r.headers.length, r.deliveryAttempt]),
    [
      ["a", 0, 10n, "a0", null, 0, 1],
      ["a", 0, 11n, null, null, 0, 1],
      ["a", 1, 5n, null, null, 1, 1],
      ["a", 1, 6n, null, null, 0, 2],
      ["b", 0, 0n, null, "b0", 0, 1],
    ],
  );
});

test("an empty batch, and a partition entry without records, decode to no records", () => {
  assert.deepEqual(recordsFromPb(pb.RecordBatch.fromPartial({}), 1), []);
  assert.deepEqual(recordsFromPb(pb.RecordBatch.fromPartial({ partitions: [{ topic: "t" }] }), 1), []);
});

test("a batch whose columns do not line up is refused whole, with INTERNAL", () => {
  const breakages: Array<[string, (p: pb.PartitionRecords) => void]> = [
    ["a key too few", (p) => p.keys.pop()],
    ["a value too many", (p) => p.values.push(empty)],
    ["a timestamp too few", (p) => p.timestampsMs.pop()],
    ["a timestamp type too few", (p) => p.timestampTypes.pop()],
    ["a delivery attempt too many", (p) => p.deliveryAttempts.push(1)],
    ["a header count too few", (p) => p.headerCounts.pop()],
    ["header counts adding up to more than the headers", (p) => (p.headerCounts[0] += 1)],
    ["a header key too few", (p) => p.headerKeys.pop()],
    ["a header value too many", (p) => p.headerValues.push(empty)],
    ["headers without header counts", (p) => (p.headerCounts = [])],
    ["a null key out of range", (p) => p.nullKeys.push(2)],
    ["a null value out of range", (p) => p.nullValues.push(99)],
    ["a null header value out of range", (p) => p.nullHeaderValues.push(3)],
  ];
  for (const [what, breakIt] of breakages) {
    // A good partition first: none of its records may come out either.
    const batch = columnar([
      { topic: "good", offset: 0n },
      { topic: "t", partition: 4, offset: 0n, headers: [["a", null], ["b", empty]] },
      { topic: "t", partition: 4, offset: 1n, headers: [["c", empty]] },
    ]);
    breakIt(batch.partitions[1]);
    assert.throws(
      () => recordsFromPb(overTheWire(batch), 1),
      (e: unknown) => e instanceof SidecarError && e.code === status.INTERNAL && e.details.startsWith("malformed record batch for t[4]: "),
      what,
    );
  }
});
