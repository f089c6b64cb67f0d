package io.github.kafkasidecar.client;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.ByteString;
import io.grpc.Status;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import kafka_sidecar.v1.Sidecar;
import org.junit.jupiter.api.Test;

/** The pure parts: coalescing, decoding the columns, the lease renewal rule. */
class UnitsTest {
  private static final TopicPartition T0 = new TopicPartition("t", 0);
  private static final TopicPartition T1 = new TopicPartition("t", 1);

  @Test
  void compressesOffsetsIntoRanges() {
    AckBuffer.Compressed c = AckBuffer.compress(List.of(7L, 1L, 2L, 3L, 9L, 10L, 2L));
    assertEquals(List.of(7L), c.singles());
    assertEquals(List.of(new OffsetRange(1, 3), new OffsetRange(9, 10)), c.ranges());
  }

  @Test
  void oneRequestCarriesEverythingBufferedThenTheBufferIsEmpty() {
    AckBuffer b = new AckBuffer();
    b.credit = 4;
    for (long o = 0; o < 3; o++) {
      b.acks.add(T0, o);
    }
    b.delayedGroup(1500).add(T1, 5);
    b.rejectGroup("bad").add(T0, 9);
    Sidecar.ConsumeRequest r = b.take();
    assertEquals(4, r.getCredit());
    assertEquals(1, r.getAcksCount());
    assertEquals(0, r.getAcks(0).getRanges(0).getFirst());
    assertEquals(2, r.getAcks(0).getRanges(0).getLast());
    assertEquals(1500, r.getDelayedNacks(0).getDelayMs());
    assertEquals("bad", r.getRejects(0).getReason());
    assertTrue(b.isEmpty());
  }

  private static Sidecar.PartitionRecords.Builder columns() {
    return Sidecar.PartitionRecords.newBuilder()
        .setTopic("t")
        .addAllOffsets(List.of(0L, 1L))
        .addKeys(ByteString.EMPTY)
        .addKeys(ByteString.EMPTY)
        .addNullKeys(0)
        .addValues(ByteString.EMPTY)
        .addValues(ByteString.copyFromUtf8("v"))
        .addNullValues(0)
        .addAllTimestampsMs(List.of(5L, 6L))
        .addTimestampTypesValue(1)
        .addTimestampTypesValue(2)
        .addAllDeliveryAttempts(List.of(1, 2))
        .addAllHeaderCounts(List.of(0, 2))
        .addHeaderKeys("n")
        .addHeaderKeys("e")
        .addHeaderValues(ByteString.EMPTY)
        .addHeaderValues(ByteString.EMPTY)
        .addNullHeaderValues(0);
  }

  @Test
  void decodedColumnsKeepNullsDistinctFromEmptyAndHeadersWithTheirRecord() {
    Sidecar.RecordBatch batch = Sidecar.RecordBatch.newBuilder().setAckTimeoutMs(3).addPartitions(columns()).build();
    List<KafkaRecord> got = Batches.decode(batch, 7);
    assertEquals(2, got.size());
    assertNull(got.get(0).key());
    assertNull(got.get(0).value());
    assertArrayEquals(new byte[0], got.get(1).key());
    assertEquals(List.of(), got.get(0).headers());
    assertEquals("n", got.get(1).headers().get(0).key());
    assertNull(got.get(1).headers().get(0).value());
    assertArrayEquals(new byte[0], got.get(1).headers().get(1).value());
    assertEquals(KafkaRecord.TimestampType.LOG_APPEND_TIME, got.get(1).timestampType());
    assertEquals(2, got.get(1).deliveryAttempt());
    assertEquals(7, got.get(1).epoch());
  }

  @Test
  void aBatchWhoseColumnsDoNotLineUpIsRefused() {
    Sidecar.RecordBatch batch =
        Sidecar.RecordBatch.newBuilder().addPartitions(columns().addDeliveryAttempts(3)).build();
    SidecarException e = assertThrows(SidecarException.class, () -> Batches.decode(batch, 1));
    assertEquals(Status.Code.INTERNAL, e.code());
    assertTrue(e.getMessage().contains("3 delivery_attempts for 2 offsets"), e.getMessage());
    Sidecar.RecordBatch badNull =
        Sidecar.RecordBatch.newBuilder().addPartitions(columns().addNullKeys(2)).build();
    assertThrows(SidecarException.class, () -> Batches.decode(badNull, 1));
  }

  private static long s(double seconds) {
    return (long) (seconds * 1e9);
  }

  @Test
  void renewExtendsWhatIsPastHalfItsLeaseAndLetsGoPastMaxLease() {
    long timeoutMs = 10_000;
    Leases.Lease old = Leases.first(s(0), timeoutMs, s(25));
    Leases.Lease young = Leases.first(s(4), timeoutMs, s(25));
    Map<TopicPartition, Map<Long, Leases.Lease>> held = new LinkedHashMap<>();
    held.put(T0, new HashMap<>(Map.of(1L, old, 2L, old, 3L, old)));
    held.put(T1, new HashMap<>(Map.of(7L, young)));

    assertEquals(new Leases.Renewal(Map.of(), 0), Leases.renew(held, s(4), timeoutMs));
    Leases.Renewal r = Leases.renew(held, s(5.5), timeoutMs);
    assertEquals(Map.of(T0, List.of(1L, 2L, 3L)), sorted(r.extend()));
    assertEquals(new Leases.Lease(s(15.5), s(25), false), held.get(T0).get(1L));
    assertSame(held.get(T0).get(1L), held.get(T0).get(3L), "records renewed together share a lease");

    held.get(T0).remove(2L); // acked meanwhile: never extended again
    assertEquals(Map.of(T0, List.of(1L, 3L), T1, List.of(7L)), sorted(Leases.renew(held, s(11), timeoutMs).extend()));
    r = Leases.renew(held, s(16.5), timeoutMs); // a lease from now ends at 26.5: past 25, not past 29
    assertEquals(Map.of(T1, List.of(7L)), r.extend());
    assertEquals(2, r.letGo());
    assertSame(Leases.NEVER, held.get(T0).get(1L));
  }

  @Test
  void recordsWithoutADeadlineAreNeverExtended() {
    Map<TopicPartition, Map<Long, Leases.Lease>> held =
        Map.of(T0, new HashMap<>(Map.of(1L, Leases.first(0, 0, s(3600)))));
    assertEquals(new Leases.Renewal(Map.of(), 0), Leases.renew(held, s(1e6), 1000));
  }

  private static Map<TopicPartition, List<Long>> sorted(Map<TopicPartition, List<Long>> m) {
    Map<TopicPartition, List<Long>> out = new HashMap<>();
    m.forEach((k, v) -> out.put(k, v.stream().sorted().toList()));
    return out;
  }
}
