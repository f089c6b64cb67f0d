package io.github.kafkasidecar.client;

import io.grpc.Status;

/**
 * The stream failed for good: the sidecar ended it with a status a new stream would get again
 * (INVALID_ARGUMENT above all), or sent a batch the client cannot read (INTERNAL).
 */
public final class SidecarException extends RuntimeException {
  private static final long serialVersionUID = 1L;

  private final transient Status.Code code;

  public SidecarException(Status.Code code, String details) {
    super(code + ": " + details);
    this.code = code;
  }

  /** The gRPC status code. */
  public Status.Code code() {
    return code;
  }
}
