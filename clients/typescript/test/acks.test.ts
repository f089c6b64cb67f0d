import assert from "node:assert/strict";
import { test } from "node:test";
import { AckBuffer, compress } from "../src/acks";

test("compress makes ranges of contiguous runs, sorted, without duplicates", () => {
  assert.deepEqual(compress([7n, 1n, 2n, 3n, 9n, 10n, 2n]), { singles: [7n], ranges: [[1n, 3n], [9n, 10n]] });
  assert.deepEqual(compress([]), { singles: [], ranges: [] });
});

test("take() puts every kind, per partition, into one request and empties the buffer", () => {
  const b = new AckBuffer();
  b.credit = 4;
  b.group("ack").add("t", 1, [5n, 3n, 4n]);
  b.group("ack").add("a", 0, [9n], [[20n, 30n]]);
  b.group("nack").add("t", 1, [6n]);
  b.group("nack", 250).add("t", 1, [8n]);
  b.group("reject", "bad").add("t", 2, [1n, 2n]);
  b.group("extend").add("t", 1, [7n]);
  const po = (topic: string, partition: number, offsets: bigint[], ranges: Array<[bigint, bigint]> = []) => ({
    topic,
    partition,
    offsets,
    ranges: ranges.map(([first, last]) => ({ first, last })),
  });
  assert.deepEqual(b.take(), {
    credit: 4n,
    acks: [po("a", 0, [9n], [[20n, 30n]]), po("t", 1, [], [[3n, 5n]])],
    nacks: [po("t", 1, [6n])],
    extends: [po("t", 1, [7n])],
    delayedNacks: [{ offsets: po("t", 1, [8n]), delayMs: 250n }],
    rejects: [{ offsets: po("t", 2, [], [[1n, 2n]]), reason: "bad" }],
  });
  assert.equal(b.empty, true);
});
