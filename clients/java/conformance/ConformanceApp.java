import com.google.gson.Gson;
import com.google.gson.GsonBuilder;
import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import io.github.kafkasidecar.client.AssignmentChange;
import io.github.kafkasidecar.client.Header;
import io.github.kafkasidecar.client.KafkaRecord;
import io.github.kafkasidecar.client.OffsetRange;
import io.github.kafkasidecar.client.Rejection;
import io.github.kafkasidecar.client.SidecarConsumer;
import io.github.kafkasidecar.client.SidecarException;
import io.github.kafkasidecar.client.TopicPartition;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Base64;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * The Java client's conformance app: follows the conformance driver's instructions
 * (tests/conformance/conformance_driver.py has the protocol: JSON lines, instructions on stdin, each
 * answered with ok or failed; records, assignment changes, rejections and a stream failure reported
 * on stdout as they happen). End of stdin closes the consumer and exits. Only the client's public API
 * is used, as an app would.
 */
public final class ConformanceApp {
  private static final Gson GSON = new GsonBuilder().serializeNulls().create(); // null stays null
  private final Map<Integer, KafkaRecord> records = new ConcurrentHashMap<>();
  private final AtomicInteger ids = new AtomicInteger();
  private SidecarConsumer consumer;
  private Thread receiver;

  public static void main(String[] args) throws Exception {
    ConformanceApp app = new ConformanceApp();
    BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
    for (String line; (line = in.readLine()) != null; ) {
      JsonObject ins = GSON.fromJson(line, JsonObject.class);
      Map<String, Object> answer = new LinkedHashMap<>();
      answer.put("seq", ins.has("seq") ? ins.get("seq").getAsInt() : null);
      try {
        app.perform(ins);
        answer.put("event", "ok");
      } catch (Exception e) {
        answer.put("event", "failed");
        answer.put("message", e.toString());
      }
      emit(answer);
    }
    if (app.consumer != null) {
      app.consumer.close();
    }
  }

  private static synchronized void emit(Map<String, Object> event) {
    System.out.println(GSON.toJson(event));
    System.out.flush();
  }

  private static String b64(byte[] data) {
    return data == null ? null : Base64.getEncoder().encodeToString(data);
  }

  private static List<List<Object>> tps(List<TopicPartition> tps) {
    List<List<Object>> out = new ArrayList<>();
    for (TopicPartition tp : tps) {
      out.add(List.of(tp.topic(), tp.partition()));
    }
    return out;
  }

  private void onAssignment(AssignmentChange ch) {
    Map<String, Object> e = new LinkedHashMap<>();
    e.put("event", "assignment");
    e.put("assigned", tps(ch.assigned()));
    e.put("added", tps(ch.added()));
    e.put("revoked", tps(ch.revoked()));
    e.put("lost", ch.lost());
    emit(e);
  }

  private void onRejection(Rejection r) {
    Map<String, Object> e = new LinkedHashMap<>();
    e.put("event", "rejection");
    e.put("code", r.code().value());
    e.put("kind", r.kind());
    e.put("topic", r.topic());
    e.put("partition", r.partition());
    e.put("offsets", r.offsets());
    List<List<Long>> ranges = new ArrayList<>();
    r.ranges().forEach(x -> ranges.add(List.of(x.first(), x.last())));
    e.put("ranges", ranges);
    e.put("reason", r.reason());
    emit(e);
  }

  private void receive(SidecarConsumer c) {
    try {
      for (KafkaRecord r : c) {
        int id = ids.incrementAndGet();
        records.put(id, r);
        Map<String, Object> e = new LinkedHashMap<>();
        e.put("event", "record");
        e.put("id", id);
        e.put("topic", r.topic());
        e.put("partition", r.partition());
        e.put("offset", r.offset());
        e.put("key", b64(r.key()));
        e.put("value", b64(r.value()));
        List<List<Object>> headers = new ArrayList<>();
        for (Header h : r.headers()) {
          List<Object> pair = new ArrayList<>();
          pair.add(h.key());
          pair.add(b64(h.value()));
          headers.add(pair);
        }
        e.put("headers", headers);
        e.put("timestamp_ms", r.timestampMs());
        e.put("delivery_attempt", r.deliveryAttempt());
        emit(e);
      }
    } catch (SidecarException ex) {
      Map<String, Object> e = new LinkedHashMap<>();
      e.put("event", "error");
      e.put("code", ex.code().value());
      e.put("message", ex.getMessage());
      emit(e);
    }
  }

  private List<KafkaRecord> pick(JsonObject ins) {
    List<KafkaRecord> out = new ArrayList<>();
    for (JsonElement id : ins.getAsJsonArray("ids")) {
      KafkaRecord r = records.get(id.getAsInt());
      if (r == null) {
        throw new IllegalArgumentException("no record with id " + id);
      }
      out.add(r);
    }
    return out;
  }

  private static Path path(JsonObject o, String key) {
    return o.has(key) && !o.get(key).isJsonNull() ? Path.of(o.get(key).getAsString()) : null;
  }

  private void perform(JsonObject ins) throws Exception {
    String op = ins.get("op").getAsString();
    if (op.equals("connect")) {
      SidecarConsumer.Builder b =
          SidecarConsumer.builder(ins.get("address").getAsString())
              .maxInFlight(ins.get("max_in_flight").getAsInt())
              .onAssignment(this::onAssignment)
              .onRejection(this::onRejection);
      if (ins.has("manage_leases")) {
        b.manageLeases(ins.get("manage_leases").getAsBoolean());
      }
      if (ins.has("max_lease_ms")) {
        b.maxLease(Duration.ofMillis(ins.get("max_lease_ms").getAsLong()));
      }
      if (ins.has("tls")) { // PEM files; cert_file and key_file for mutual TLS
        JsonObject tls = ins.getAsJsonObject("tls");
        b.tls(path(tls, "ca_file"), path(tls, "cert_file"), path(tls, "key_file"));
      }
      if (ins.has("token_file")) {
        b.tokenFile(Path.of(ins.get("token_file").getAsString()));
      }
      consumer = b.connect();
      SidecarConsumer c = consumer;
      receiver = new Thread(() -> receive(c), "receiver");
      receiver.start();
      return;
    }
    SidecarConsumer c = consumer;
    if (c == null) {
      throw new IllegalStateException("not connected");
    }
    switch (op) {
      case "ack" -> c.ack(pick(ins));
      case "nack" -> {
        JsonElement delay = ins.get("delay_ms");
        if (delay == null || delay.isJsonNull()) {
          c.nack(pick(ins));
        } else {
          c.nackAfter(Duration.ofMillis(delay.getAsLong()), pick(ins));
        }
      }
      case "extend" -> c.extend(pick(ins));
      case "reject" -> c.reject(ins.get("reason").getAsString(), pick(ins));
      case "ack_offsets" -> {
        List<Long> offsets = new ArrayList<>();
        ins.getAsJsonArray("offsets").forEach(o -> offsets.add(o.getAsLong()));
        List<OffsetRange> ranges = new ArrayList<>();
        for (JsonElement r : ins.getAsJsonArray("ranges")) {
          JsonArray pair = r.getAsJsonArray();
          ranges.add(new OffsetRange(pair.get(0).getAsLong(), pair.get(1).getAsLong()));
        }
        c.ackOffsets(ins.get("topic").getAsString(), ins.get("partition").getAsInt(), offsets, ranges);
      }
      case "flush" -> c.flush(Duration.ofSeconds(10));
      case "close" -> {
        c.close();
        if (receiver != null) {
          receiver.join();
        }
      }
      default -> throw new IllegalArgumentException("unknown op " + op);
    }
  }
}
