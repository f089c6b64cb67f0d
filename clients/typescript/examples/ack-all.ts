/**
 * Print and ack every record the sidecar delivers:
 *   SIDECAR_GRPC_ADDRESS=unix:///run/kafka-sidecar/sidecar.sock node dist/examples/ack-all.js
 * (An app outside this repository imports from "kafka-sidecar-client".)
 */
import { Consumer } from "../src/index";

async function main(): Promise<void> {
  const consumer = new Consumer(process.env.SIDECAR_GRPC_ADDRESS ?? "127.0.0.1:50051", { maxInFlight: 1000 });
  consumer.connect();
  for (const signal of ["SIGINT", "SIGTERM"] as const) process.once(signal, () => void consumer.close());
  for await (const record of consumer) {
    console.log(`${record.topic}[${record.partition}]@${record.offset} key=${record.key} value=${record.value}`);
    consumer.ack(record);
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
