package io.github.kafkasidecar.client;

import java.util.List;

/**
 * A Kafka record delivered by the sidecar. Ack, nack or reject it when done.
 *
 * <p>{@code key}, {@code value} and a header's value are null for Kafka nulls and non-null (possibly
 * empty) otherwise. {@code deliveryAttempt} is 1 on first delivery and grows on each redelivery:
 * delivery is at-least-once, so processing should tolerate duplicates.
 *
 * @param timestampMs milliseconds since the Unix epoch; 0 when the broker gave none
 * @param ackTimeoutMs the lease of the batch the record came in (0: no deadline)
 * @param epoch which stream delivered the record: acks are stream-local, so acks of records of an
 *     earlier (broken) stream are dropped by the client instead of being rejected by the sidecar
 */
public record KafkaRecord(
    String topic,
    int partition,
    long offset,
    byte[] key,
    byte[] value,
    List<Header> headers,
    long timestampMs,
    TimestampType timestampType,
    int deliveryAttempt,
    long ackTimeoutMs,
    long epoch) {

  /** How the broker set {@code timestampMs}. */
  public enum TimestampType {
    UNSPECIFIED,
    CREATE_TIME,
    LOG_APPEND_TIME
  }

  public TopicPartition topicPartition() {
    return new TopicPartition(topic, partition);
  }

  @Override
  public String toString() {
    return topic + "[" + partition + "]@" + offset + " (attempt " + deliveryAttempt + ")";
  }
}
