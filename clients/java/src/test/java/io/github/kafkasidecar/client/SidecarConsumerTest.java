package io.github.kafkasidecar.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.grpc.Status;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import kafka_sidecar.v1.Sidecar;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** The consumer against a fake sidecar on a local port. */
class SidecarConsumerTest {
  private FakeSidecar fake;
  private final List<SidecarConsumer> consumers = new ArrayList<>();

  @BeforeEach
  void start() throws Exception {
    fake = new FakeSidecar();
  }

  @AfterEach
  void stop() throws Exception {
    consumers.forEach(SidecarConsumer::close);
    fake.close();
  }

  private SidecarConsumer connect(SidecarConsumer.Builder b) {
    SidecarConsumer c = b.maxInFlight(10).reconnectBackoff(Duration.ofMillis(5), Duration.ofMillis(20)).connect();
    consumers.add(c);
    return c;
  }

  private SidecarConsumer connect() {
    return connect(SidecarConsumer.builder(fake.address()));
  }

  private static List<Long> expand(Sidecar.PartitionOffsets po) {
    List<Long> out = new ArrayList<>(po.getOffsetsList());
    po.getRangesList().forEach(r -> {
      for (long o = r.getFirst(); o <= r.getLast(); o++) {
        out.add(o);
      }
    });
    out.sort(null);
    return out;
  }

  /** The offsets each request with extends extends. */
  private static List<List<Long>> extended(List<Sidecar.ConsumeRequest> requests) {
    List<List<Long>> out = new ArrayList<>();
    for (Sidecar.ConsumeRequest r : requests) {
      if (r.getExtendsCount() > 0) {
        assertEquals(1, r.getExtendsCount(), "one partition");
        out.add(expand(r.getExtends(0)));
      }
    }
    return out;
  }

  @Test
  void creditAndOneCoalescedRequestForABulkAck() throws Exception {
    SidecarConsumer c = connect();
    FakeSidecar.FakeStream s = fake.stream();
    assertEquals(10, s.next().getCredit());
    s.send(0, 0, 1, 2, 3);
    List<KafkaRecord> batch = c.nextBatch(Duration.ofSeconds(5));
    assertEquals(4, batch.size());
    c.ack(batch.subList(0, 3));
    c.ack(batch.get(0)); // twice: no second credit
    c.nackAfter(Duration.ofMillis(1500), batch.get(3));
    c.flush(Duration.ofSeconds(5));
    long credit = 0;
    List<Sidecar.ConsumeRequest> got = new ArrayList<>();
    while (credit < 4) {
      Sidecar.ConsumeRequest r = s.next();
      credit += r.getCredit();
      got.add(r);
    }
    assertEquals(4, credit);
    assertEquals(List.of(0L, 1L, 2L), expand(got.stream().flatMap(r -> r.getAcksList().stream()).findFirst().orElseThrow()));
    assertEquals(1500, got.stream().flatMap(r -> r.getDelayedNacksList().stream()).findFirst().orElseThrow().getDelayMs());
    c.close();
    assertTrue(s.halfClosed, "close half-closes the stream");
  }

  @Test
  void aBrokenStreamReconnectsWithFreshCreditAndDropsAcksOfItsRecords() throws Exception {
    SidecarConsumer c = connect();
    FakeSidecar.FakeStream s = fake.stream();
    s.next();
    s.send(0, 0);
    KafkaRecord old = c.nextBatch(Duration.ofSeconds(5)).get(0);
    s.fail(Status.UNAVAILABLE.withDescription("restarting"));
    FakeSidecar.FakeStream s2 = fake.stream();
    assertEquals(10, s2.next().getCredit());
    c.ack(old);
    CompletableFuture<List<KafkaRecord>> next = c.nextBatchAsync();
    s2.send(0, 0);
    KafkaRecord again = next.get(5, TimeUnit.SECONDS).get(0);
    c.ack(again);
    Sidecar.ConsumeRequest r = s2.next();
    assertEquals(1, r.getCredit(), "credit for the new stream's record only");
    assertEquals(List.of(0L), expand(r.getAcks(0)));
    assertEquals(2, c.streamsOpened());
  }

  @Test
  void invalidArgumentIsASidecarExceptionAndNotRetried() throws Exception {
    SidecarConsumer c = connect();
    FakeSidecar.FakeStream s = fake.stream();
    s.next();
    s.fail(Status.INVALID_ARGUMENT.withDescription("bad range 4..2"));
    SidecarException e = assertThrows(SidecarException.class, () -> c.nextBatch(Duration.ofSeconds(5)));
    assertEquals(Status.Code.INVALID_ARGUMENT, e.code());
    ExecutionException async = assertThrows(ExecutionException.class, () -> c.nextBatchAsync().get(5, TimeUnit.SECONDS));
    assertTrue(async.getCause() instanceof SidecarException);
    Thread.sleep(200);
    assertEquals(1, c.streamsOpened());
  }

  @Test
  void heldRecordsAreExtendedInOneRequestPerTick() throws Exception {
    SidecarConsumer c = connect();
    FakeSidecar.FakeStream s = fake.stream();
    s.next();
    s.send(200, 0, 1, 2, 3, 4, 5);
    List<KafkaRecord> batch = c.nextBatch(Duration.ofSeconds(5));
    c.ack(batch.subList(0, 2)); // finished: never extended
    List<List<Long>> ext = extended(s.within(Duration.ofMillis(700)));
    assertTrue(ext.size() >= 3, "held records must be extended every half lease: " + ext);
    ext.forEach(offsets -> assertEquals(List.of(2L, 3L, 4L, 5L), offsets));
    assertTrue(c.leaseExtensions() >= 4L * ext.size());
    c.ack(batch.subList(2, 6));
    c.flush(Duration.ofSeconds(5));
    s.within(Duration.ofMillis(50)); // a tick that raced the ack
    assertEquals(List.of(), extended(s.within(Duration.ofMillis(300))), "nothing held, nothing extended");
  }

  @Test
  void leaseManagementCanBeTurnedOff() throws Exception {
    SidecarConsumer c = connect(SidecarConsumer.builder(fake.address()).manageLeases(false));
    FakeSidecar.FakeStream s = fake.stream();
    s.next();
    s.send(100, 0);
    c.nextBatch(Duration.ofSeconds(5));
    assertEquals(List.of(), extended(s.within(Duration.ofMillis(400))));
    assertEquals(0, c.leaseExtensions());
  }

  @Test
  void recordsHeldPastTheMaxLeaseAreLetGo() throws Exception {
    SidecarConsumer c = connect(SidecarConsumer.builder(fake.address()).maxLease(Duration.ofMillis(700)));
    FakeSidecar.FakeStream s = fake.stream();
    s.next();
    s.send(200, 0);
    c.nextBatch(Duration.ofSeconds(5));
    // Extended from 100 ms (half its lease) while a fresh lease ends by 700 ms: never after 500 ms.
    assertTrue(extended(s.within(Duration.ofSeconds(1))).size() >= 1, "extended before the max lease");
    assertEquals(List.of(), extended(s.within(Duration.ofMillis(500))), "let go: no longer extended");
  }

  @Test
  void theIteratorEndsWhenTheConsumerIsClosed() throws Exception {
    SidecarConsumer c = connect();
    FakeSidecar.FakeStream s = fake.stream();
    s.next();
    s.send(0, 0, 1);
    List<Long> seen = new ArrayList<>();
    Thread reader = new Thread(() -> c.forEach(r -> seen.add(r.offset())));
    reader.start();
    Thread.sleep(300);
    c.close();
    reader.join(5000);
    assertEquals(List.of(0L, 1L), seen);
  }

  @Test
  void badOptionsAreRefused() {
    assertThrows(IllegalArgumentException.class, () -> SidecarConsumer.builder("x:1").maxInFlight(0).connect());
    assertThrows(IllegalArgumentException.class, () -> SidecarConsumer.builder("x:1").maxLease(Duration.ZERO).connect());
  }
}
