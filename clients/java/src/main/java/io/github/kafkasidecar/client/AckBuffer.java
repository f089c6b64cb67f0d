package io.github.kafkasidecar.client;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import kafka_sidecar.v1.Sidecar;

/**
 * What is to be sent on a stream and has not been yet: credit, acks, nacks, extends, rejects.
 *
 * <p>An app acks record by record, often thousands per second; sending each on its own would cost a
 * request (and a sidecar wake-up) per record. So everything is buffered and {@link #take} empties it
 * into one request, with each partition's contiguous offsets compressed into inclusive ranges (a
 * batch of 500 acked records is one range). Ranges are only formed from offsets of one request kind:
 * the sidecar applies a range to every record in flight inside it, so a range spanning an offset the
 * app has not finished would ack a record the app never processed. Not thread-safe: the consumer
 * holds its lock.
 */
final class AckBuffer {
  long credit;
  final Group acks = new Group();
  final Group nacks = new Group();
  final Group extends_ = new Group();
  final Map<Long, Group> delayed = new TreeMap<>();
  final Map<String, Group> rejects = new LinkedHashMap<>();

  /** Offsets and raw ranges of one request kind, per partition. */
  static final class Group {
    final Map<TopicPartition, List<Long>> offsets = new LinkedHashMap<>();
    final Map<TopicPartition, List<OffsetRange>> ranges = new LinkedHashMap<>();

    void add(TopicPartition tp, long offset) {
      offsets.computeIfAbsent(tp, k -> new ArrayList<>()).add(offset);
    }

    void addRaw(TopicPartition tp, List<Long> offs, List<OffsetRange> rngs) {
      if (!offs.isEmpty()) {
        offsets.computeIfAbsent(tp, k -> new ArrayList<>()).addAll(offs);
      }
      if (!rngs.isEmpty()) {
        ranges.computeIfAbsent(tp, k -> new ArrayList<>()).addAll(rngs);
      }
    }

    boolean isEmpty() {
      return offsets.isEmpty() && ranges.isEmpty();
    }

    List<Sidecar.PartitionOffsets> toProto() {
      Map<TopicPartition, Boolean> order = new LinkedHashMap<>();
      offsets.keySet().forEach(tp -> order.put(tp, true));
      ranges.keySet().forEach(tp -> order.put(tp, true));
      List<Sidecar.PartitionOffsets> out = new ArrayList<>();
      for (TopicPartition tp : order.keySet()) {
        Sidecar.PartitionOffsets.Builder b =
            Sidecar.PartitionOffsets.newBuilder().setTopic(tp.topic()).setPartition(tp.partition());
        Compressed c = compress(offsets.getOrDefault(tp, List.of()));
        b.addAllOffsets(c.singles());
        List<OffsetRange> all = new ArrayList<>(c.ranges());
        all.addAll(ranges.getOrDefault(tp, List.of()));
        for (OffsetRange r : all) {
          b.addRanges(Sidecar.OffsetRange.newBuilder().setFirst(r.first()).setLast(r.last()));
        }
        out.add(b.build());
      }
      return out;
    }
  }

  /** Lone offsets and inclusive ranges of contiguous runs, both sorted, duplicates merged. */
  record Compressed(List<Long> singles, List<OffsetRange> ranges) {}

  static Compressed compress(List<Long> offsets) {
    long[] sorted = offsets.stream().mapToLong(Long::longValue).sorted().distinct().toArray();
    List<Long> singles = new ArrayList<>();
    List<OffsetRange> ranges = new ArrayList<>();
    int i = 0;
    while (i < sorted.length) {
      int j = i;
      while (j + 1 < sorted.length && sorted[j + 1] == sorted[j] + 1) {
        j++;
      }
      if (i == j) {
        singles.add(sorted[i]);
      } else {
        ranges.add(new OffsetRange(sorted[i], sorted[j]));
      }
      i = j + 1;
    }
    return new Compressed(singles, ranges);
  }

  Group delayedGroup(long delayMs) {
    return delayed.computeIfAbsent(delayMs, k -> new Group());
  }

  Group rejectGroup(String reason) {
    return rejects.computeIfAbsent(reason, k -> new Group());
  }

  boolean isEmpty() {
    return credit == 0
        && acks.isEmpty()
        && nacks.isEmpty()
        && extends_.isEmpty()
        && delayed.isEmpty()
        && rejects.isEmpty();
  }

  /** Everything buffered, as one request; the buffer is empty afterwards. */
  Sidecar.ConsumeRequest take() {
    Sidecar.ConsumeRequest.Builder b =
        Sidecar.ConsumeRequest.newBuilder()
            .setCredit(credit)
            .addAllAcks(acks.toProto())
            .addAllNacks(nacks.toProto())
            .addAllExtends(extends_.toProto());
    delayed.forEach(
        (delay, g) ->
            g.toProto()
                .forEach(
                    po ->
                        b.addDelayedNacks(
                            Sidecar.DelayedNack.newBuilder().setOffsets(po).setDelayMs(delay))));
    rejects.forEach(
        (reason, g) ->
            g.toProto()
                .forEach(
                    po -> b.addRejects(Sidecar.Reject.newBuilder().setOffsets(po).setReason(reason))));
    credit = 0;
    for (Group g : Arrays.asList(acks, nacks, extends_)) {
      g.offsets.clear();
      g.ranges.clear();
    }
    delayed.clear();
    rejects.clear();
    return b.build();
  }
}
