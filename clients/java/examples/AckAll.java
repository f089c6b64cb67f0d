import io.github.kafkasidecar.client.KafkaRecord;
import io.github.kafkasidecar.client.SidecarConsumer;
import java.nio.charset.StandardCharsets;

/**
 * Prints and acks every record the sidecar delivers. Ctrl-C or SIGTERM closes the consumer (pending
 * acks are written, the stream half-closed), which ends the loop; unacked records are delivered
 * again by the sidecar. Run it from clients/java (see README.md):
 *
 * <pre>
 * SIDECAR_GRPC_ADDRESS=unix:///run/kafka-sidecar/sidecar.sock \
 *   java -cp "$(cat target/classpath.txt):target/classes" examples/AckAll.java
 * </pre>
 */
public final class AckAll {
  public static void main(String[] args) throws InterruptedException {
    String address = System.getenv().getOrDefault("SIDECAR_GRPC_ADDRESS", "127.0.0.1:50051");
    SidecarConsumer consumer = SidecarConsumer.builder(address).maxInFlight(1000).connect();
    Thread main = Thread.currentThread();
    // The JVM runs this on SIGINT and SIGTERM; it waits for the loop below to finish its record.
    Runtime.getRuntime().addShutdownHook(new Thread(() -> {
      consumer.close();
      try {
        main.join(5000);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
    }));
    for (KafkaRecord r : consumer) { // ends once the consumer is closed
      System.out.printf("%s[%d]@%d key=%s value=%s attempt=%d%n", r.topic(), r.partition(), r.offset(),
          text(r.key()), text(r.value()), r.deliveryAttempt());
      consumer.ack(r);
    }
    System.out.println("stopping: consumer closed");
  }

  private static String text(byte[] b) {
    return b == null ? "null" : '"' + new String(b, StandardCharsets.UTF_8) + '"';
  }
}
