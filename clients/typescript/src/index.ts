/**
 * TypeScript client of kafka-sidecar: receive Kafka records from the sidecar beside you, and ack them.
 *
 * The sidecar is the Kafka consumer-group member and commits only what was acked, so delivery is
 * at-least-once: process records idempotently.
 */
export { type Range, compress } from "./acks";
export { CLOSE_TIMEOUT_MS, Consumer, type ConsumerOptions, type Logger, type Records } from "./consumer";
export { DEFAULT_MAX_LEASE_MS } from "./leases";
export {
  type AssignmentChange,
  type Header,
  Record,
  type Rejection,
  type RequestKind,
  SidecarError,
  TimestampType,
  type TopicPartition,
} from "./records";
export { type Pem, type TlsOptions } from "./security";
