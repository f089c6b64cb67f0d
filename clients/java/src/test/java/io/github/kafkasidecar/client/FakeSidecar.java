package io.github.kafkasidecar.client;

import io.grpc.Grpc;
import io.grpc.InsecureServerCredentials;
import io.grpc.Metadata;
import io.grpc.Server;
import io.grpc.ServerInterceptor;
import io.grpc.ServerInterceptors;
import io.grpc.Status;
import io.grpc.stub.StreamObserver;
import java.io.IOException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import kafka_sidecar.v1.ConsumerServiceGrpc;
import kafka_sidecar.v1.Sidecar;

/**
 * A ConsumerService on a local port whose streams the test plays by hand. The real sidecar is covered
 * by the conformance suite (tests/conformance).
 */
final class FakeSidecar extends ConsumerServiceGrpc.ConsumerServiceImplBase implements AutoCloseable {
  private static final Metadata.Key<String> AUTHORIZATION =
      Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER);

  final BlockingQueue<FakeStream> streams = new LinkedBlockingQueue<>();
  /** The authorization metadata of each stream opened, in order ("" without). */
  final List<String> tokens = java.util.Collections.synchronizedList(new ArrayList<>());
  private final Server server;

  FakeSidecar() throws IOException {
    ServerInterceptor recordToken =
        new ServerInterceptor() {
          @Override
          public <Q, R> io.grpc.ServerCall.Listener<Q> interceptCall(
              io.grpc.ServerCall<Q, R> call, Metadata headers, io.grpc.ServerCallHandler<Q, R> next) {
            String token = headers.get(AUTHORIZATION);
            tokens.add(token == null ? "" : token);
            return next.startCall(call, headers);
          }
        };
    server =
        Grpc.newServerBuilderForPort(0, InsecureServerCredentials.create())
            .addService(ServerInterceptors.intercept(this, recordToken))
            .build()
            .start();
  }

  String address() {
    return "127.0.0.1:" + server.getPort();
  }

  FakeStream stream() throws InterruptedException {
    FakeStream s = streams.poll(5, TimeUnit.SECONDS);
    if (s == null) {
      throw new AssertionError("no stream opened within 5 s");
    }
    return s;
  }

  @Override
  public StreamObserver<Sidecar.ConsumeRequest> consume(StreamObserver<Sidecar.ConsumeResponse> out) {
    FakeStream s = new FakeStream(out);
    streams.add(s);
    return new StreamObserver<>() {
      @Override
      public void onNext(Sidecar.ConsumeRequest r) {
        s.requests.add(r);
      }

      @Override
      public void onError(Throwable t) {
        s.ended = true;
      }

      @Override
      public void onCompleted() { // like the sidecar: a half-close ends the stream
        s.halfClosed = true;
        out.onCompleted();
      }
    };
  }

  @Override
  public void close() throws InterruptedException {
    server.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
  }

  /** One stream: what the client sent, and the sidecar's side to play. */
  static final class FakeStream {
    final BlockingQueue<Sidecar.ConsumeRequest> requests = new LinkedBlockingQueue<>();
    final StreamObserver<Sidecar.ConsumeResponse> out;
    volatile boolean halfClosed;
    volatile boolean ended;

    FakeStream(StreamObserver<Sidecar.ConsumeResponse> out) {
      this.out = out;
    }

    Sidecar.ConsumeRequest next() throws InterruptedException {
      Sidecar.ConsumeRequest r = requests.poll(5, TimeUnit.SECONDS);
      if (r == null) {
        throw new AssertionError("no request within 5 s");
      }
      return r;
    }

    /** Everything the client sends within {@code d}. */
    List<Sidecar.ConsumeRequest> within(Duration d) throws InterruptedException {
      List<Sidecar.ConsumeRequest> out = new ArrayList<>();
      long deadline = System.nanoTime() + d.toNanos();
      for (long left; (left = deadline - System.nanoTime()) > 0; ) {
        Sidecar.ConsumeRequest r = requests.poll(left, TimeUnit.NANOSECONDS);
        if (r != null) {
          out.add(r);
        }
      }
      return out;
    }

    void send(long ackTimeoutMs, long... offsets) {
      Sidecar.PartitionRecords.Builder p = Sidecar.PartitionRecords.newBuilder().setTopic("t").setPartition(0);
      for (long o : offsets) {
        p.addOffsets(o)
            .addKeys(com.google.protobuf.ByteString.EMPTY)
            .addValues(com.google.protobuf.ByteString.copyFromUtf8("v" + o))
            .addTimestampsMs(1000 + o)
            .addTimestampTypesValue(1)
            .addDeliveryAttempts(1);
      }
      Sidecar.RecordBatch batch =
          Sidecar.RecordBatch.newBuilder().setAckTimeoutMs(ackTimeoutMs).addPartitions(p).build();
      out.onNext(Sidecar.ConsumeResponse.newBuilder().setRecords(batch).build());
    }

    void fail(Status status) {
      out.onError(status.asRuntimeException());
    }
  }
}
