/**
 * Transport security of the channel to the sidecar: TLS or mutual TLS, and the bearer token.
 *
 * The sidecar listens on a unix socket or loopback by default, and then neither is needed; when its
 * gRPC port is reachable from elsewhere it can require TLS (`SIDECAR_TLS_CERT_FILE`), a client
 * certificate (`SIDECAR_TLS_CLIENT_CA_FILE`) and a token (`SIDECAR_GRPC_TOKEN_FILE`).
 *
 * The token travels as metadata of each `Consume` call, not as call credentials: grpc-js refuses to
 * combine call credentials with an insecure channel, and the sidecar also accepts a token over a unix
 * socket or plaintext. A token file is read again whenever it changed, so a rotated secret is used
 * from the next stream on.
 */
import { readFileSync, statSync } from "node:fs";
import { type ChannelCredentials, type ChannelOptions, credentials, Metadata } from "@grpc/grpc-js";

/** PEM content as a Buffer, or the path of a PEM file as a string. */
export type Pem = Buffer | string;

export interface TlsOptions {
  /** The CA bundle that signed the sidecar's certificate (default: Node's root certificates). */
  ca?: Pem;
  /** The client certificate chain, for mutual TLS (with `key`). */
  cert?: Pem;
  /** The client certificate's private key, for mutual TLS (with `cert`). */
  key?: Pem;
  /** The name to check the sidecar's certificate for, when it is not the address's host. */
  serverName?: string;
}

function readPem(value: Pem | undefined, what: string): Buffer | null {
  if (value === undefined) return null;
  if (Buffer.isBuffer(value)) return value;
  try {
    return readFileSync(value);
  } catch (e) {
    throw new Error(`cannot read the ${what} file ${value}: ${(e as NodeJS.ErrnoException).code ?? e}`);
  }
}

/** Channel credentials and options for `tls` (`true`: TLS with the defaults); files are read now. */
export function tlsChannel(tls: TlsOptions | boolean | undefined): {
  credentials: ChannelCredentials;
  options: ChannelOptions;
} {
  if (!tls) return { credentials: credentials.createInsecure(), options: {} };
  const t: TlsOptions = tls === true ? {} : tls;
  if ((t.cert === undefined) !== (t.key === undefined)) {
    throw new RangeError("tls: give both cert and key (mutual TLS) or neither");
  }
  const creds = credentials.createSsl(readPem(t.ca, "CA"), readPem(t.key, "client key"), readPem(t.cert, "client certificate"));
  const options: ChannelOptions = t.serverName ? { "grpc.ssl_target_name_override": t.serverName } : {};
  return { credentials: creds, options };
}

/** The bearer token: a fixed string, or a file read again when its size or mtime changed. */
export class Token {
  private value: string | undefined;
  private stamp = "";

  constructor(token: string | undefined, private readonly file: string | undefined) {
    if ((token === undefined) === (file === undefined)) throw new RangeError("give token or tokenFile, not both");
    if (token !== undefined) this.value = check(token, "token");
  }

  /** The current token; throws (without the token in the message) if the file cannot be read. */
  current(): string {
    if (this.file === undefined) return this.value!;
    try {
      const st = statSync(this.file);
      const stamp = `${st.mtimeMs}:${st.size}`;
      if (stamp !== this.stamp || this.value === undefined) {
        this.value = check(readFileSync(this.file, "utf8").trim(), `token file ${this.file}`);
        this.stamp = stamp;
      }
    } catch (e) {
      if (e instanceof RangeError) throw e;
      throw new Error(`cannot read the token file ${this.file}: ${(e as NodeJS.ErrnoException).code ?? e}`);
    }
    return this.value;
  }

  metadata(): Metadata {
    const md = new Metadata();
    md.set("authorization", `Bearer ${this.current()}`);
    return md;
  }
}

/** Metadata values must be printable ASCII; say so here rather than fail inside gRPC. */
function check(token: string, what: string): string {
  if (!/^[\x20-\x7e]+$/.test(token)) throw new RangeError(`${what}: a token must be non-empty printable ASCII`);
  return token;
}
