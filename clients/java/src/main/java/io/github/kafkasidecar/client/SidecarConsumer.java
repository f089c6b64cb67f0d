package io.github.kafkasidecar.client;

import io.grpc.ChannelCredentials;
import io.grpc.Grpc;
import io.grpc.InsecureChannelCredentials;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.TlsChannelCredentials;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Path;
import io.grpc.stub.ClientCallStreamObserver;
import io.grpc.stub.ClientResponseObserver;
import java.lang.System.Logger.Level;
import java.time.Duration;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collection;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.NoSuchElementException;
import java.util.Objects;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ScheduledThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;
import java.util.function.Consumer;
import kafka_sidecar.v1.ConsumerServiceGrpc;
import kafka_sidecar.v1.Sidecar;

/**
 * Receives records from a kafka-sidecar over one gRPC stream and acks them.
 *
 * <pre>{@code
 * try (SidecarConsumer consumer = SidecarConsumer.builder("unix:///run/kafka-sidecar/sidecar.sock")
 *     .maxInFlight(1000).connect()) {
 *   for (KafkaRecord record : consumer) {   // blocks; ends when the consumer is closed
 *     handle(record);
 *     consumer.ack(record);
 *   }
 * }
 * }</pre>
 *
 * <p>It keeps the stream open across sidecar restarts: when the stream breaks with UNAVAILABLE or
 * CANCELLED it reconnects with exponential backoff and jitter. Each stream has an epoch, and records
 * remember theirs: the contract makes acks stream-local, so when a stream ends the sidecar delivers
 * its unacked records again, acks of them are dropped, and those not yet handed to the app are
 * discarded. Credit is exact: a stream starts with {@code maxInFlight} credit and each record
 * finished (acked, nacked or rejected) once gives one back, in the same request as the ack.
 *
 * <p>{@code ack}, {@code nack}, {@code extend} and {@code reject} never block: what is buffered goes
 * out as one request per write, with contiguous offsets compressed into ranges. With lease management
 * (the default) the client extends the records it holds before their lease runs out (see {@link
 * Leases}). All methods are thread-safe; callbacks run on gRPC's threads and must not block long.
 */
public final class SidecarConsumer implements AutoCloseable, Iterable<KafkaRecord> {
  /** Upper bound of every wait in {@link #close}: closing must never hang on a stuck sidecar. */
  public static final Duration CLOSE_TIMEOUT = Duration.ofSeconds(5);

  /** How long, by default, the client keeps extending a record's lease for the app. */
  public static final Duration DEFAULT_MAX_LEASE = Duration.ofHours(1);

  private static final System.Logger LOG = System.getLogger("io.github.kafkasidecar.client");

  private final String address;
  private final Builder cfg;
  private final ManagedChannel channel;
  private final ConsumerServiceGrpc.ConsumerServiceStub stub;
  private final ScheduledThreadPoolExecutor executor;

  private final ReentrantLock lock = new ReentrantLock();
  private final Condition changed = lock.newCondition();
  private final CountDownLatch done = new CountDownLatch(1); // no stream will be opened again
  private Stream stream;
  private long epoch;
  private final ArrayDeque<List<KafkaRecord>> ready = new ArrayDeque<>();
  private final ArrayDeque<CompletableFuture<List<KafkaRecord>>> asyncWaiters = new ArrayDeque<>();
  private RuntimeException error;
  private boolean closed;
  private List<TopicPartition> assignment = List.of();
  private long rejections;
  private long streamsOpened;
  private long leaseExtensions;
  private int attempt;

  /** The state of one Consume call; thrown away whole when the call ends. */
  private static final class Stream {
    final long epoch;
    ClientCallStreamObserver<Sidecar.ConsumeRequest> requests;
    final AckBuffer pending = new AckBuffer();
    final Map<TopicPartition, Map<Long, Leases.Lease>> inflight = new java.util.HashMap<>();
    final List<Map.Entry<Long, CompletableFuture<Void>>> waiters = new ArrayList<>();
    long queued; // sequence number of the last change to pending
    long written; // sequence number of the last change written
    boolean writeScheduled;
    boolean ending; // half-close after writing what is pending
    boolean halfClosed;
    boolean responded;
    java.util.concurrent.ScheduledFuture<?> ticker;

    Stream(long epoch) {
      this.epoch = epoch;
    }
  }

  private SidecarConsumer(Builder cfg) {
    this.address = cfg.address;
    this.cfg = cfg;
    this.channel =
        Grpc.newChannelBuilder(address, cfg.credentials)
            .maxInboundMessageSize(Integer.MAX_VALUE)
            .build();
    ConsumerServiceGrpc.ConsumerServiceStub plain = ConsumerServiceGrpc.newStub(channel);
    this.stub = cfg.token == null ? plain : plain.withCallCredentials(cfg.token);
    this.executor =
        new ScheduledThreadPoolExecutor(
            1,
            r -> {
              Thread t = new Thread(r, "kafka-sidecar-client " + address);
              t.setDaemon(true);
              return t;
            });
    executor.setRemoveOnCancelPolicy(true);
  }

  /** Starts configuring a consumer of the sidecar at {@code address}: "unix:///path.sock" or "host:port". */
  public static Builder builder(String address) {
    return new Builder(address);
  }

  /** Options of a {@link SidecarConsumer}; {@link #connect} starts it. */
  public static final class Builder {
    private final String address;
    private int maxInFlight = 1000;
    private Duration backoffInitial = Duration.ofMillis(50);
    private Duration backoffMax = Duration.ofSeconds(5);
    private Consumer<AssignmentChange> onAssignment = change -> {};
    private Consumer<Rejection> onRejection = rejection -> {};
    private boolean manageLeases = true;
    private Duration maxLease = DEFAULT_MAX_LEASE;
    private ChannelCredentials credentials = InsecureChannelCredentials.create();
    private BearerToken token;

    private Builder(String address) {
      this.address = Objects.requireNonNull(address, "address");
    }

    /** Records delivered and not yet acked, nacked or rejected, at most (default 1000). */
    public Builder maxInFlight(int n) {
      this.maxInFlight = n;
      return this;
    }

    /** Reconnect delays: exponential from {@code initial} up to {@code max}, with jitter (50 ms..5 s). */
    public Builder reconnectBackoff(Duration initial, Duration max) {
      this.backoffInitial = initial;
      this.backoffMax = max;
      return this;
    }

    /** Called on every assignment change (on gRPC's thread; exceptions are logged). */
    public Builder onAssignment(Consumer<AssignmentChange> fn) {
      this.onAssignment = Objects.requireNonNull(fn);
      return this;
    }

    /** Called for every request the sidecar did not accept (on gRPC's thread; exceptions are logged). */
    public Builder onRejection(Consumer<Rejection> fn) {
      this.onRejection = Objects.requireNonNull(fn);
      return this;
    }

    /**
     * Lease management (default on): the client extends the lease of every record it holds
     * (received, not yet acked, nacked or rejected) before the sidecar's ack timeout runs out, up to
     * {@link #maxLease} after the record arrived; then it lets the record go and the sidecar delivers
     * it again once its lease ends. So a slow handler causes no redeliveries, and a stuck one holds
     * its records for the max lease at most.
     */
    public Builder manageLeases(boolean on) {
      this.manageLeases = on;
      return this;
    }

    /** How long after a record arrived the client stops extending its lease (default one hour). */
    public Builder maxLease(Duration d) {
      this.maxLease = Objects.requireNonNull(d);
      return this;
    }

    /**
     * TLS to the sidecar (default: plaintext, for a unix socket or loopback), from PEM files: {@code
     * caFile} is the CA bundle that signed the sidecar's certificate (null: the JDK's trusted roots);
     * {@code certFile} and {@code keyFile} (PKCS#8) are the client's certificate chain and key for
     * mutual TLS (both null without). The files are read here.
     *
     * @throws UncheckedIOException if a file cannot be read or parsed
     */
    public Builder tls(Path caFile, Path certFile, Path keyFile) {
      if ((certFile == null) != (keyFile == null)) {
        throw new IllegalArgumentException("tls: give both certFile and keyFile (mutual TLS) or neither");
      }
      TlsChannelCredentials.Builder b = TlsChannelCredentials.newBuilder();
      try {
        if (caFile != null) {
          b.trustManager(caFile.toFile());
        }
        if (certFile != null) {
          b.keyManager(certFile.toFile(), keyFile.toFile());
        }
      } catch (IOException | IllegalArgumentException e) {
        throw new UncheckedIOException(new IOException("tls: " + e.getMessage(), e));
      }
      this.credentials = b.build();
      return this;
    }

    /**
     * The channel's credentials, for what {@link #tls} does not cover (PEM from memory, a custom
     * trust manager, certificates that reload): for example {@code TlsChannelCredentials.newBuilder()
     * .trustManager(caPemStream).build()}.
     */
    public Builder channelCredentials(ChannelCredentials creds) {
      this.credentials = Objects.requireNonNull(creds);
      return this;
    }

    /**
     * Sends {@code authorization: Bearer <token>} with every stream, over TLS or plaintext (the
     * sidecar accepts it over a unix socket too; on a plaintext TCP port anyone watching the traffic
     * can read it, so use {@link #tls} when the port leaves the pod). A sidecar that wants another
     * token ends the stream with UNAUTHENTICATED: a {@link SidecarException}, not retried.
     */
    public Builder token(String token) {
      this.token = BearerToken.of(token);
      return this;
    }

    /** Like {@link #token}, read from {@code file} (trimmed), and read again when the file changes. */
    public Builder tokenFile(Path file) {
      this.token = BearerToken.fromFile(Objects.requireNonNull(file));
      return this;
    }

    /**
     * Checks the options and starts consuming. Returns at once: a sidecar that is not listening yet
     * is retried in the background, and records arrive when it is. Close the consumer when done.
     */
    public SidecarConsumer connect() {
      if (maxInFlight < 1) {
        throw new IllegalArgumentException("maxInFlight must be at least 1, got " + maxInFlight);
      }
      if (backoffInitial.isNegative() || backoffInitial.isZero() || backoffMax.compareTo(backoffInitial) < 0) {
        throw new IllegalArgumentException(
            "reconnectBackoff must be 0 < initial <= max, got " + backoffInitial + ", " + backoffMax);
      }
      if (maxLease.isNegative() || maxLease.isZero()) {
        throw new IllegalArgumentException("maxLease must be > 0, got " + maxLease);
      }
      if (address.isEmpty()) {
        throw new IllegalArgumentException("empty address (want unix:///path.sock or host:port)");
      }
      if (token != null) {
        try {
          token.current(); // a missing or bad token file is the caller's error, now
        } catch (IOException e) {
          throw new UncheckedIOException("token file: " + e.getMessage(), e);
        }
      }
      SidecarConsumer c = new SidecarConsumer(this);
      c.executor.execute(c::open);
      return c;
    }
  }

  // -- receiving ---------------------------------------------------------------------------------

  /**
   * The next batch of records, as the sidecar sent it; empty when {@code timeout} passes first or the
   * consumer is closed.
   *
   * @throws SidecarException when the stream failed for good
   */
  public List<KafkaRecord> nextBatch(Duration timeout) throws InterruptedException {
    long deadline = System.nanoTime() + timeout.toNanos();
    lock.lock();
    try {
      while (true) {
        List<KafkaRecord> batch = takeLiveLocked();
        if (batch != null) {
          return batch;
        }
        if (error != null) {
          throw error;
        }
        long left = deadline - System.nanoTime();
        if (closed || left <= 0) {
          return List.of();
        }
        changed.awaitNanos(left);
      }
    } finally {
      lock.unlock();
    }
  }

  /**
   * The next batch, asynchronously: completes with it, with an empty list once the consumer is closed,
   * or exceptionally with a {@link SidecarException} when the stream failed for good.
   */
  public CompletableFuture<List<KafkaRecord>> nextBatchAsync() {
    lock.lock();
    try {
      List<KafkaRecord> batch = takeLiveLocked();
      if (batch != null) {
        return CompletableFuture.completedFuture(batch);
      }
      if (error != null) {
        return CompletableFuture.failedFuture(error);
      }
      if (closed) {
        return CompletableFuture.completedFuture(List.of());
      }
      CompletableFuture<List<KafkaRecord>> f = new CompletableFuture<>();
      asyncWaiters.add(f);
      return f;
    } finally {
      lock.unlock();
    }
  }

  /**
   * Records as they arrive, blocking, until the consumer is closed (or the thread is interrupted:
   * then iteration ends with the interrupt flag set). Records of a stream that broke meanwhile are
   * skipped: the sidecar delivers them again. {@code next()} throws a {@link SidecarException} when
   * the stream failed for good.
   */
  @Override
  public Iterator<KafkaRecord> iterator() {
    return new Iterator<>() {
      private List<KafkaRecord> batch = List.of();
      private int i;

      @Override
      public boolean hasNext() {
        while (i < batch.size() && batch.get(i).epoch() != liveEpoch()) {
          i = batch.size(); // its stream ended: the rest comes again
        }
        while (i >= batch.size()) {
          try {
            batch = nextBatch(Duration.ofDays(365));
          } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return false;
          }
          i = 0;
          if (batch.isEmpty() && isClosed()) {
            return false;
          }
        }
        return true;
      }

      @Override
      public KafkaRecord next() {
        if (!hasNext()) {
          throw new NoSuchElementException("the consumer is closed");
        }
        return batch.get(i++);
      }
    };
  }

  private List<KafkaRecord> takeLiveLocked() {
    long live = stream == null ? -1 : stream.epoch;
    while (!ready.isEmpty()) {
      List<KafkaRecord> batch = ready.poll();
      if (batch.get(0).epoch() == live) {
        return batch;
      }
    }
    return null;
  }

  private long liveEpoch() {
    lock.lock();
    try {
      return stream == null ? -1 : stream.epoch;
    } finally {
      lock.unlock();
    }
  }

  /** The sidecar's current assignment. */
  public List<TopicPartition> assignment() {
    return locked(() -> assignment);
  }

  /** How many requests the sidecar rejected so far (see {@link Builder#onRejection}). */
  public long rejections() {
    return locked(() -> rejections);
  }

  /** How many times a stream was (re)opened. */
  public long streamsOpened() {
    return locked(() -> streamsOpened);
  }

  /** How many record leases the client extended for the app (lease management). */
  public long leaseExtensions() {
    return locked(() -> leaseExtensions);
  }

  public boolean isClosed() {
    return locked(() -> closed);
  }

  private <T> T locked(java.util.function.Supplier<T> read) {
    lock.lock();
    try {
      return read.get();
    } finally {
      lock.unlock();
    }
  }

  // -- acking ------------------------------------------------------------------------------------

  /**
   * Marks records processed: the sidecar may commit past them. Non-blocking; one credit per record
   * goes back with the ack. Acks of records of an earlier stream (before a reconnect) are dropped:
   * the sidecar delivers those again. Acking twice is harmless.
   */
  public void ack(KafkaRecord... records) {
    ack(Arrays.asList(records));
  }

  public void ack(Collection<KafkaRecord> records) {
    finish(records, b -> b.acks, true);
  }

  /** Asks for records to be delivered again (attempt + 1) after the sidecar's retry backoff. */
  public void nack(KafkaRecord... records) {
    nack(Arrays.asList(records));
  }

  public void nack(Collection<KafkaRecord> records) {
    finish(records, b -> b.nacks, true);
  }

  /** Asks for records to be delivered again no sooner than {@code delay} from now. */
  public void nackAfter(Duration delay, KafkaRecord... records) {
    nackAfter(delay, Arrays.asList(records));
  }

  public void nackAfter(Duration delay, Collection<KafkaRecord> records) {
    long ms = Math.max(0, delay.toMillis());
    finish(records, b -> b.delayedGroup(ms), true);
  }

  /** Sends records to the dead-letter topic now, with {@code reason}, whatever attempts remain. */
  public void reject(String reason, KafkaRecord... records) {
    reject(reason, Arrays.asList(records));
  }

  public void reject(String reason, Collection<KafkaRecord> records) {
    finish(records, b -> b.rejectGroup(reason), true);
  }

  /** Restarts the lease of records still being worked on; they stay in flight (no credit back). */
  public void extend(KafkaRecord... records) {
    extend(Arrays.asList(records));
  }

  public void extend(Collection<KafkaRecord> records) {
    finish(records, b -> b.extends_, false);
  }

  /**
   * Acks raw offsets and inclusive ranges of a partition on the current stream, as given. Credit is
   * given back for the records of the current stream they cover; anything else is for the sidecar to
   * accept or reject.
   */
  public void ackOffsets(String topic, int partition, List<Long> offsets, List<OffsetRange> ranges) {
    lock.lock();
    try {
      Stream s = stream;
      if (s == null || (offsets.isEmpty() && ranges.isEmpty())) {
        return;
      }
      TopicPartition tp = new TopicPartition(topic, partition);
      Map<Long, Leases.Lease> inflight = s.inflight.getOrDefault(tp, Map.of());
      int covered = 0;
      for (Iterator<Long> it = inflight.keySet().iterator(); it.hasNext(); ) {
        long o = it.next();
        if (offsets.contains(o) || ranges.stream().anyMatch(r -> r.first() <= o && o <= r.last())) {
          it.remove();
          covered++;
        }
      }
      s.pending.acks.addRaw(tp, offsets, ranges);
      s.pending.credit += covered;
      queueLocked(s);
    } finally {
      lock.unlock();
    }
  }

  private void finish(
      Collection<KafkaRecord> records,
      java.util.function.Function<AckBuffer, AckBuffer.Group> group,
      boolean finishes) {
    lock.lock();
    try {
      Stream s = stream;
      if (s == null) {
        return;
      }
      int n = 0;
      for (KafkaRecord r : records) {
        if (r == null || r.epoch() != s.epoch) {
          continue;
        }
        TopicPartition tp = r.topicPartition();
        Map<Long, Leases.Lease> offsets = s.inflight.get(tp);
        if (offsets == null || !offsets.containsKey(r.offset())) {
          continue; // already acked, nacked or rejected
        }
        if (finishes) {
          offsets.remove(r.offset());
        }
        group.apply(s.pending).add(tp, r.offset());
        n++;
      }
      if (n > 0) {
        if (finishes) {
          s.pending.credit += n;
        }
        queueLocked(s);
      }
    } finally {
      lock.unlock();
    }
  }

  /** Completes once everything acked so far is written to the stream (or the stream ended). */
  public CompletableFuture<Void> flushAsync() {
    lock.lock();
    try {
      Stream s = stream;
      if (s == null || s.written >= s.queued) {
        return CompletableFuture.completedFuture(null);
      }
      CompletableFuture<Void> f = new CompletableFuture<>();
      s.waiters.add(Map.entry(s.queued, f));
      return f;
    } finally {
      lock.unlock();
    }
  }

  /** Waits until everything acked so far is written to the stream (or the stream ended). */
  public void flush(Duration timeout) throws InterruptedException, TimeoutException {
    try {
      flushAsync().get(timeout.toNanos(), TimeUnit.NANOSECONDS);
    } catch (ExecutionException e) {
      throw new IllegalStateException(e.getCause());
    }
  }

  // -- lifecycle ---------------------------------------------------------------------------------

  /**
   * Sends pending acks, half-closes the stream and closes the channel. Unacked records are delivered
   * again by the sidecar. Each step is bounded by {@link #CLOSE_TIMEOUT}, so close returns even if
   * the sidecar is stuck or gone.
   */
  @Override
  public void close() {
    List<CompletableFuture<List<KafkaRecord>>> waiting;
    lock.lock();
    try {
      if (closed) {
        return;
      }
      closed = true;
      changed.signalAll();
      waiting = new ArrayList<>(asyncWaiters);
      asyncWaiters.clear();
      if (stream == null) {
        done.countDown(); // between streams: none will be opened again
      }
    } finally {
      lock.unlock();
    }
    waiting.forEach(f -> f.complete(List.of()));
    try {
      flush(CLOSE_TIMEOUT);
    } catch (TimeoutException | InterruptedException | IllegalStateException e) {
      LOG.log(Level.WARNING, "acks not written at close ({0}); the sidecar will redeliver", e.toString());
      if (e instanceof InterruptedException) {
        Thread.currentThread().interrupt();
      }
    }
    lock.lock();
    try {
      if (stream != null) {
        stream.ending = true;
        scheduleWriteLocked(stream);
      }
    } finally {
      lock.unlock();
    }
    // The stream ends when the sidecar answers the half-close by ending it.
    if (!await(done, CLOSE_TIMEOUT)) {
      lock.lock();
      try {
        if (stream != null && stream.requests != null) {
          stream.requests.cancel("consumer closing", null);
        }
      } finally {
        lock.unlock();
      }
      await(done, CLOSE_TIMEOUT);
    }
    channel.shutdownNow();
    try {
      channel.awaitTermination(CLOSE_TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
    executor.shutdownNow();
    lock.lock();
    try {
      ready.clear();
    } finally {
      lock.unlock();
    }
  }

  private static boolean await(CountDownLatch latch, Duration timeout) {
    try {
      return latch.await(timeout.toMillis(), TimeUnit.MILLISECONDS);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      return false;
    }
  }

  // -- the stream --------------------------------------------------------------------------------

  /** Opens a stream (on the executor); when it ends, {@link #ended} decides whether to open another. */
  private void open() {
    Stream s;
    lock.lock();
    try {
      if (closed || error != null) {
        done.countDown();
        return;
      }
      s = new Stream(++epoch);
      s.pending.credit = cfg.maxInFlight;
      stream = s;
      streamsOpened++;
      changed.signalAll();
    } finally {
      lock.unlock();
    }
    stub.consume(
        new ClientResponseObserver<Sidecar.ConsumeRequest, Sidecar.ConsumeResponse>() {
          @Override
          public void beforeStart(ClientCallStreamObserver<Sidecar.ConsumeRequest> requests) {
            s.requests = requests;
          }

          @Override
          public void onNext(Sidecar.ConsumeResponse response) {
            handle(s, response);
          }

          @Override
          public void onError(Throwable t) {
            ended(s, Status.fromThrowable(t));
          }

          @Override
          public void onCompleted() {
            ended(s, null);
          }
        });
    lock.lock();
    try {
      queueLocked(s);
    } finally {
      lock.unlock();
    }
  }

  private void queueLocked(Stream s) {
    s.queued++;
    scheduleWriteLocked(s);
  }

  /** Writes on the executor, so everything buffered until then goes out as one request. */
  private void scheduleWriteLocked(Stream s) {
    if (s.writeScheduled || executor.isShutdown()) {
      return;
    }
    s.writeScheduled = true;
    executor.execute(() -> write(s));
  }

  private void write(Stream s) {
    List<CompletableFuture<Void>> release = new ArrayList<>();
    lock.lock();
    try {
      s.writeScheduled = false;
      if (stream != s || s.halfClosed || s.requests == null) {
        return;
      }
      try {
        if (!s.pending.isEmpty()) {
          long seq = s.queued;
          s.requests.onNext(s.pending.take());
          s.written = seq;
          s.waiters.removeIf(
              w -> {
                if (w.getKey() <= seq) {
                  release.add(w.getValue());
                  return true;
                }
                return false;
              });
        }
        if (s.ending) {
          s.halfClosed = true;
          s.requests.onCompleted();
        }
      } catch (RuntimeException e) { // the call ended meanwhile; ended() learns why from the status
        LOG.log(Level.DEBUG, "write on stream {0} failed: {1}", s.epoch, e);
      }
    } finally {
      lock.unlock();
    }
    release.forEach(f -> f.complete(null));
  }

  private void handle(Stream s, Sidecar.ConsumeResponse response) {
    switch (response.getEventCase()) {
      case RECORDS -> {
        List<KafkaRecord> batch;
        try {
          batch = Batches.decode(response.getRecords(), s.epoch);
        } catch (SidecarException e) {
          // A batch the client cannot read is a protocol error: fatal, not retried, and the call is
          // cancelled so the sidecar delivers its records again to whoever consumes next.
          fail(e);
          s.requests.cancel("malformed record batch", e);
          return;
        }
        received(s, batch, response.getRecords().getAckTimeoutMs());
      }
      case ASSIGNMENT -> {
        AssignmentChange change = Batches.assignment(response.getAssignment());
        lock.lock();
        try {
          s.responded = true;
          assignment = change.assigned();
        } finally {
          lock.unlock();
        }
        callback(cfg.onAssignment, change);
      }
      case REJECTION -> {
        Rejection r = Batches.rejection(response.getRejection());
        lock.lock();
        try {
          rejections++;
        } finally {
          lock.unlock();
        }
        LOG.log(
            Level.WARNING,
            "sidecar rejected {0} of {1}[{2}]: {3}",
            r.kind(), r.topic(), r.partition(), r.reason());
        callback(cfg.onRejection, r);
      }
      default -> LOG.log(Level.DEBUG, "ignoring unknown response {0}", response);
    }
  }

  private void received(Stream s, List<KafkaRecord> batch, long ackTimeoutMs) {
    boolean managed = cfg.manageLeases && ackTimeoutMs > 0;
    Leases.Lease lease =
        managed ? Leases.first(System.nanoTime(), ackTimeoutMs, cfg.maxLease.toNanos()) : Leases.NEVER;
    CompletableFuture<List<KafkaRecord>> waiter = null;
    lock.lock();
    try {
      s.responded = true;
      for (KafkaRecord r : batch) {
        s.inflight.computeIfAbsent(r.topicPartition(), k -> new java.util.HashMap<>()).put(r.offset(), lease);
      }
      if (managed && s.ticker == null && !executor.isShutdown()) {
        long tick = Leases.tickMillis(ackTimeoutMs);
        s.ticker =
            executor.scheduleAtFixedRate(() -> keepLeases(s, ackTimeoutMs), tick, tick, TimeUnit.MILLISECONDS);
      }
      if (!batch.isEmpty()) {
        waiter = asyncWaiters.poll();
        if (waiter == null) {
          ready.add(batch);
          changed.signalAll();
        }
      }
    } finally {
      lock.unlock();
    }
    if (waiter != null) {
      waiter.complete(batch);
    }
  }

  /** The stream's lease ticker: extends, in one request, every held record past half its lease. */
  private void keepLeases(Stream s, long ackTimeoutMs) {
    int letGo;
    lock.lock();
    try {
      if (stream != s) {
        return;
      }
      Leases.Renewal renewal = Leases.renew(s.inflight, System.nanoTime(), ackTimeoutMs);
      letGo = renewal.letGo();
      renewal.extend().forEach((tp, offsets) -> {
        offsets.forEach(o -> s.pending.extends_.add(tp, o));
        leaseExtensions += offsets.size();
      });
      if (!renewal.extend().isEmpty()) {
        queueLocked(s);
      }
    } finally {
      lock.unlock();
    }
    if (letGo > 0) {
      LOG.log(
          Level.WARNING,
          "{0} records held longer than the max lease ({1}) are no longer extended; the sidecar"
              + " delivers them again when their lease ends",
          letGo, cfg.maxLease);
    }
  }

  private <T> void callback(Consumer<T> fn, T arg) {
    try {
      fn.accept(arg);
    } catch (RuntimeException e) {
      LOG.log(Level.WARNING, "callback raised", e);
    }
  }

  private void fail(RuntimeException e) {
    List<CompletableFuture<List<KafkaRecord>>> waiting;
    lock.lock();
    try {
      error = e;
      changed.signalAll();
      waiting = new ArrayList<>(asyncWaiters);
      asyncWaiters.clear();
    } finally {
      lock.unlock();
    }
    waiting.forEach(f -> f.completeExceptionally(e));
  }

  /** The stream ended (status null: cleanly): reconnect with backoff, or stop for good. */
  private void ended(Stream s, Status status) {
    List<CompletableFuture<Void>> release = new ArrayList<>();
    boolean stop;
    long delayNanos = 0;
    lock.lock();
    try {
      if (stream == s) {
        stream = null;
      }
      if (s.ticker != null) {
        s.ticker.cancel(false);
      }
      s.waiters.forEach(w -> release.add(w.getValue()));
      s.waiters.clear();
      changed.signalAll();
      stop = closed || error != null;
      if (!stop && s.responded) {
        attempt = 0;
      }
      if (!stop) {
        double d = Math.min(cfg.backoffMax.toNanos(), cfg.backoffInitial.toNanos() * Math.pow(2, attempt));
        delayNanos = (long) (d / 2 + Math.random() * d / 2); // jitter: uniform in [d/2, d]
        attempt++;
      }
    } finally {
      lock.unlock();
    }
    release.forEach(f -> f.complete(null));
    if (stop) {
      done.countDown();
      return;
    }
    if (status != null && status.getCode() != Status.Code.UNAVAILABLE && status.getCode() != Status.Code.CANCELLED) {
      fail(new SidecarException(status.getCode(), Objects.toString(status.getDescription(), "")));
      done.countDown();
      return;
    }
    String reason = status == null ? "the sidecar ended the stream" : status.getCode() + ": " + status.getDescription();
    LOG.log(
        Level.INFO,
        "stream to {0} ended ({1}); reconnecting in {2} ms",
        address, reason, TimeUnit.NANOSECONDS.toMillis(delayNanos));
    // The channel backs off reconnecting on its own (1 s, growing to 2 min): a sidecar back sooner
    // would be ignored until then, so the stream's own backoff decides.
    channel.resetConnectBackoff();
    try {
      executor.schedule(this::open, delayNanos, TimeUnit.NANOSECONDS);
    } catch (java.util.concurrent.RejectedExecutionException e) {
      done.countDown(); // closed meanwhile
    }
  }
}
