package io.github.kafkasidecar.client;

import io.grpc.CallCredentials;
import io.grpc.Metadata;
import io.grpc.Status;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.BasicFileAttributes;
import java.util.concurrent.Executor;

/**
 * The bearer token as call credentials: {@code authorization: Bearer <token>} on every stream. A fixed
 * value, or a file read again whenever its size or modification time changed, so a rotated secret is
 * used from the next stream on. Sent over any transport: the sidecar accepts a token over a unix
 * socket or plaintext too. Its value is never part of a message or {@code toString}.
 */
final class BearerToken extends CallCredentials {
  private static final Metadata.Key<String> AUTHORIZATION =
      Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER);

  private final Path file; // null: a fixed token
  private String value;
  private String stamp = "";

  private BearerToken(String value, Path file) {
    this.value = value;
    this.file = file;
  }

  static BearerToken of(String token) {
    return new BearerToken(check(token, "token"), null);
  }

  static BearerToken fromFile(Path file) {
    return new BearerToken(null, file);
  }

  /** The current token; a token file is read again if it changed. */
  synchronized String current() throws IOException {
    if (file != null) {
      BasicFileAttributes attrs = Files.readAttributes(file, BasicFileAttributes.class);
      String now = attrs.lastModifiedTime() + ":" + attrs.size();
      if (value == null || !now.equals(stamp)) {
        value = check(Files.readString(file, StandardCharsets.UTF_8).strip(), "token file " + file);
        stamp = now;
      }
    }
    return value;
  }

  @Override
  public void applyRequestMetadata(RequestInfo info, Executor executor, MetadataApplier applier) {
    executor.execute(
        () -> {
          try {
            Metadata headers = new Metadata();
            headers.put(AUTHORIZATION, "Bearer " + current());
            applier.apply(headers);
          } catch (IOException | IllegalArgumentException e) {
            // UNAUTHENTICATED, not UNAVAILABLE: retrying would not make the file readable.
            applier.fail(Status.UNAUTHENTICATED.withDescription("token file: " + e.getMessage()));
          }
        });
  }

  @Override
  public String toString() {
    return file == null ? "BearerToken(<set>)" : "BearerToken(" + file + ")";
  }

  /** Metadata values must be printable ASCII; say so here rather than fail inside gRPC. */
  private static String check(String token, String what) {
    if (token == null || token.isEmpty() || !token.chars().allMatch(ch -> ch >= ' ' && ch <= '~')) {
      throw new IllegalArgumentException(what + ": a token must be non-empty printable ASCII");
    }
    return token;
  }
}
