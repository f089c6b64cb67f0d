package io.github.kafkasidecar.client;

import com.google.protobuf.ByteString;
import io.grpc.Status;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import kafka_sidecar.v1.Sidecar;

/**
 * Decoding of the wire's record batches, laid out by column (see the contract's PartitionRecords),
 * back into records; and of the other responses.
 */
final class Batches {
  private static final byte[] EMPTY = new byte[0];

  private Batches() {}

  /**
   * The records of a batch, partition after partition, in the order sent. A batch whose columns do
   * not line up is refused whole (a SidecarException INTERNAL): guessing which record a key or
   * header belongs to would hand the app wrong data.
   */
  static List<KafkaRecord> decode(Sidecar.RecordBatch batch, long epoch) {
    int n = 0;
    for (Sidecar.PartitionRecords p : batch.getPartitionsList()) {
      String problem = check(p);
      if (problem != null) {
        throw new SidecarException(
            Status.Code.INTERNAL,
            "malformed record batch for " + p.getTopic() + "[" + p.getPartition() + "]: " + problem);
      }
      n += p.getOffsetsCount();
    }
    List<KafkaRecord> out = new ArrayList<>(n);
    for (Sidecar.PartitionRecords p : batch.getPartitionsList()) {
      append(out, p, batch.getAckTimeoutMs(), epoch);
    }
    return out;
  }

  /** What is wrong with the columns of {@code p}, or null when they line up. */
  static String check(Sidecar.PartitionRecords p) {
    int n = p.getOffsetsCount();
    int[][] columns = {
      {p.getKeysCount()}, {p.getValuesCount()}, {p.getTimestampsMsCount()},
      {p.getTimestampTypesCount()}, {p.getDeliveryAttemptsCount()}
    };
    String[] names = {"keys", "values", "timestamps_ms", "timestamp_types", "delivery_attempts"};
    for (int i = 0; i < names.length; i++) {
      if (columns[i][0] != n) {
        return columns[i][0] + " " + names[i] + " for " + n + " offsets";
      }
    }
    int counts = p.getHeaderCountsCount();
    if (counts != 0 && counts != n) {
      return counts + " header_counts for " + n + " offsets";
    }
    long total = 0;
    for (int c : p.getHeaderCountsList()) {
      total += Integer.toUnsignedLong(c);
    }
    if (total != p.getHeaderKeysCount() || p.getHeaderKeysCount() != p.getHeaderValuesCount()) {
      return "header_counts add up to " + total + ", with " + p.getHeaderKeysCount()
          + " header_keys and " + p.getHeaderValuesCount() + " header_values";
    }
    String bad = outOfRange("null_keys", p.getNullKeysList(), n);
    if (bad == null) {
      bad = outOfRange("null_values", p.getNullValuesList(), n);
    }
    if (bad == null) {
      bad = outOfRange("null_header_values", p.getNullHeaderValuesList(), p.getHeaderValuesCount());
    }
    return bad;
  }

  private static String outOfRange(String name, List<Integer> indexes, int size) {
    for (int i : indexes) {
      if (Integer.toUnsignedLong(i) >= size) {
        return name + " has index " + Integer.toUnsignedString(i) + ", out of range for " + size
            + " entries";
      }
    }
    return null;
  }

  private static void append(
      List<KafkaRecord> out, Sidecar.PartitionRecords p, long ackTimeoutMs, long epoch) {
    int n = p.getOffsetsCount();
    boolean[] nullKey = flags(p.getNullKeysList(), n);
    boolean[] nullValue = flags(p.getNullValuesList(), n);
    boolean[] nullHeader = flags(p.getNullHeaderValuesList(), p.getHeaderValuesCount());
    boolean withHeaders = p.getHeaderCountsCount() > 0;
    int h = 0;
    for (int i = 0; i < n; i++) {
      List<Header> headers = List.of();
      if (withHeaders && p.getHeaderCounts(i) > 0) {
        Header[] mine = new Header[p.getHeaderCounts(i)];
        for (int j = 0; j < mine.length; j++, h++) {
          byte[] v = nullHeader[h] ? null : bytes(p.getHeaderValues(h));
          mine[j] = new Header(p.getHeaderKeys(h), v);
        }
        headers = Arrays.asList(mine);
      }
      out.add(
          new KafkaRecord(
              p.getTopic(),
              p.getPartition(),
              p.getOffsets(i),
              nullKey[i] ? null : bytes(p.getKeys(i)),
              nullValue[i] ? null : bytes(p.getValues(i)),
              headers,
              p.getTimestampsMs(i),
              timestampType(p.getTimestampTypesValue(i)),
              p.getDeliveryAttempts(i),
              ackTimeoutMs,
              epoch));
    }
  }

  private static boolean[] flags(List<Integer> indexes, int size) {
    boolean[] out = new boolean[size];
    for (int i : indexes) {
      out[i] = true;
    }
    return out;
  }

  private static byte[] bytes(ByteString b) {
    return b.isEmpty() ? EMPTY.clone() : b.toByteArray();
  }

  private static KafkaRecord.TimestampType timestampType(int value) {
    return switch (value) {
      case Sidecar.TimestampType.TIMESTAMP_TYPE_CREATE_TIME_VALUE -> KafkaRecord.TimestampType.CREATE_TIME;
      case Sidecar.TimestampType.TIMESTAMP_TYPE_LOG_APPEND_TIME_VALUE ->
          KafkaRecord.TimestampType.LOG_APPEND_TIME;
      default -> KafkaRecord.TimestampType.UNSPECIFIED;
    };
  }

  static AssignmentChange assignment(Sidecar.AssignmentChange a) {
    return new AssignmentChange(
        partitions(a.getAssignedList()),
        partitions(a.getAddedList()),
        partitions(a.getRevokedList()),
        a.getLost());
  }

  private static List<TopicPartition> partitions(List<Sidecar.TopicPartitions> tps) {
    List<TopicPartition> out = new ArrayList<>();
    for (Sidecar.TopicPartitions tp : tps) {
      for (int p : tp.getPartitionsList()) {
        out.add(new TopicPartition(tp.getTopic(), p));
      }
    }
    return List.copyOf(out);
  }

  static Rejection rejection(Sidecar.Rejection r) {
    List<OffsetRange> ranges = new ArrayList<>();
    for (Sidecar.OffsetRange range : r.getOffsets().getRangesList()) {
      ranges.add(new OffsetRange(range.getFirst(), range.getLast()));
    }
    String kind =
        switch (r.getKind()) {
          case REQUEST_KIND_ACK -> "ack";
          case REQUEST_KIND_NACK -> "nack";
          case REQUEST_KIND_EXTEND -> "extend";
          case REQUEST_KIND_REJECT -> "reject";
          default -> r.getNack() ? "nack" : "ack";
        };
    return new Rejection(
        Status.fromCodeValue(r.getCode()).getCode(),
        kind,
        r.getOffsets().getTopic(),
        r.getOffsets().getPartition(),
        List.copyOf(r.getOffsets().getOffsetsList()),
        List.copyOf(ranges),
        r.getReason());
  }
}
