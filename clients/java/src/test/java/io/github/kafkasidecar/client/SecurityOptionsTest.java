package io.github.kafkasidecar.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;

import io.grpc.Status;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The token options against a fake sidecar that records each stream's metadata, and the checks of the
 * TLS and token options. TLS and mutual TLS themselves run against the real sidecar in the conformance
 * suite (tests/conformance), with certificates made there.
 */
class SecurityOptionsTest {
  @TempDir Path dir;
  private FakeSidecar fake;
  private SidecarConsumer consumer;

  @BeforeEach
  void start() throws Exception {
    fake = new FakeSidecar();
  }

  @AfterEach
  void stop() throws Exception {
    if (consumer != null) {
      consumer.close();
    }
    fake.close();
  }

  private SidecarConsumer connect(SidecarConsumer.Builder b) {
    consumer = b.reconnectBackoff(Duration.ofMillis(5), Duration.ofMillis(20)).connect();
    return consumer;
  }

  @Test
  void aTokenFileIsSentAndReadAgainWhenItChanges() throws Exception {
    Path file = dir.resolve("token");
    Files.writeString(file, "first-token\n");
    SidecarConsumer c = connect(SidecarConsumer.builder(fake.address()).tokenFile(file));
    FakeSidecar.FakeStream s = fake.stream();
    s.next();
    Files.writeString(file, "second-token-longer");
    s.fail(Status.UNAVAILABLE.withDescription("restarting"));
    fake.stream();
    assertEquals(List.of("Bearer first-token", "Bearer second-token-longer"), List.copyOf(fake.tokens));
    assertEquals(2, c.streamsOpened());
  }

  @Test
  void noTokenNoAuthorization() throws Exception {
    connect(SidecarConsumer.builder(fake.address()));
    fake.stream();
    assertEquals(List.of(""), List.copyOf(fake.tokens));
  }

  @Test
  void unauthenticatedIsASidecarExceptionAndNotRetried() throws Exception {
    SidecarConsumer c = connect(SidecarConsumer.builder(fake.address()).token("wrong-token"));
    FakeSidecar.FakeStream s = fake.stream();
    s.next();
    s.fail(Status.UNAUTHENTICATED.withDescription("missing or wrong bearer token"));
    SidecarException e = assertThrows(SidecarException.class, () -> c.nextBatch(Duration.ofSeconds(5)));
    assertEquals(Status.Code.UNAUTHENTICATED, e.code());
    assertEquals(List.of("Bearer wrong-token"), List.copyOf(fake.tokens));
    Thread.sleep(200);
    assertEquals(1, c.streamsOpened());
  }

  @Test
  void optionsAreCheckedUpFrontWithoutShowingTheToken() {
    SidecarConsumer.Builder b = SidecarConsumer.builder(fake.address());
    IllegalArgumentException bad = assertThrows(IllegalArgumentException.class, () -> b.token("two\nlines"));
    assertFalse(bad.getMessage().contains("two"));
    assertThrows(UncheckedIOException.class, () -> b.tokenFile(dir.resolve("absent")).connect());
    assertThrows(IllegalArgumentException.class, () -> b.tls(null, dir.resolve("app.crt"), null));
    assertThrows(UncheckedIOException.class, () -> b.tls(dir.resolve("absent.pem"), null, null));
    assertFalse(BearerToken.of("s3cret").toString().contains("s3cret"));
  }
}
