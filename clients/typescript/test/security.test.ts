/**
 * The TLS, mutual TLS and token options against an in-process fake sidecar that records each stream's
 * metadata. Certificates are made at test time with the openssl command. The real sidecar is covered by
 * the conformance suite (tests/conformance), which also runs over mutual TLS with a token.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { Server, ServerCredentials, type ServerDuplexStream, status } from "@grpc/grpc-js";
import { Consumer, SidecarError } from "../src/index";
import * as pb from "../src/gen/kafka_sidecar/v1/sidecar";
import { columnar } from "./columnar";

type Call = ServerDuplexStream<pb.ConsumeRequest, pb.ConsumeResponse>;

const dir = mkdtempSync(join(tmpdir(), "ks-security-"));
const file = (name: string): string => join(dir, name);

/** A CA, and a leaf it signs for 127.0.0.1 (`serverAuth`) or for a client (`clientAuth`). */
function pki(): void {
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  const ssl = (...args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: "pipe" });
  ssl("req", "-x509", ...ec, "-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=test-ca", "-days", "1");
  for (const [name, ext] of [
    ["sidecar", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"],
    ["app", "extendedKeyUsage=clientAuth\n"],
  ]) {
    writeFileSync(file(`${name}.ext`), ext);
    ssl("req", ...ec, "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", `/CN=${name}`);
    ssl("x509", "-req", "-in", `${name}.csr`, "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
      "-out", `${name}.crt`, "-days", "1", "-extfile", `${name}.ext`);
  }
}
pki();

interface Fake {
  address: string;
  /** The authorization metadata of each stream opened, in order ("" without). */
  tokens: string[];
  calls: Call[];
}

const stops: Array<() => void> = [];
const consumers: Consumer[] = [];
after(async () => {
  await Promise.all(consumers.map((c) => c.close()));
  stops.forEach((stop) => stop());
  rmSync(dir, { recursive: true, force: true });
});

/** A fake sidecar that answers every stream with one record, over `creds`. */
async function fake(creds: ServerCredentials): Promise<Fake> {
  const server = new Server();
  const f: Fake = { address: "", tokens: [], calls: [] };
  server.addService(pb.ConsumerServiceService, {
    consume: (call: Call) => {
      f.tokens.push(String(call.metadata.get("authorization")[0] ?? ""));
      f.calls.push(call);
      call.on("end", () => call.end());
      call.write({ event: { $case: "records", value: columnar([{ offset: BigInt(f.calls.length) }]) } });
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", creds, (e, p) => (e ? reject(e) : resolve(p))),
  );
  stops.push(() => server.forceShutdown());
  f.address = `127.0.0.1:${port}`;
  return f;
}

const mtlsServer = (): ServerCredentials =>
  ServerCredentials.createSsl(
    readFileSync(file("ca.pem")),
    [{ private_key: readFileSync(file("sidecar.key")), cert_chain: readFileSync(file("sidecar.crt")) }],
    true,
  );

function connect(address: string, options: ConstructorParameters<typeof Consumer>[1]): Consumer {
  const c = new Consumer(address, { reconnectBackoffMs: { initial: 5, max: 20 }, ...options }).connect();
  consumers.push(c);
  return c;
}

test("mutual TLS from files, with a token file read again when it changes", async () => {
  const f = await fake(mtlsServer());
  writeFileSync(file("token"), "first-token\n");
  const c = connect(f.address, {
    tls: { ca: file("ca.pem"), cert: file("app.crt"), key: file("app.key") },
    tokenFile: file("token"),
  });
  assert.equal((await c.receive(5000)).length, 1);
  writeFileSync(file("token"), "second-token-longer");
  f.calls[0].emit("error", Object.assign(new Error("restarting"), { code: status.UNAVAILABLE, details: "restarting" }));
  const [again] = await c.receive(5000);
  assert.equal(again.offset, 2n, "from the second stream");
  assert.deepEqual(f.tokens, ["Bearer first-token", "Bearer second-token-longer"]);
  await c.close();
});

test("mutual TLS from Buffers without a token sends no authorization", async () => {
  const f = await fake(mtlsServer());
  const c = connect(f.address, {
    tls: { ca: readFileSync(file("ca.pem")), cert: readFileSync(file("app.crt")), key: readFileSync(file("app.key")) },
  });
  assert.equal((await c.receive(5000)).length, 1);
  assert.deepEqual(f.tokens, [""]);
  await c.close();
});

test("without a client certificate no stream reaches the sidecar", async () => {
  const f = await fake(mtlsServer());
  const c = connect(f.address, { tls: { ca: file("ca.pem") } });
  assert.deepEqual(await c.receive(1000), []);
  assert.equal(f.tokens.length, 0);
  await c.close();
});

test("a token goes over plaintext too; UNAUTHENTICATED is a SidecarError, not retried", async () => {
  const f = await fake(ServerCredentials.createInsecure());
  const c = connect(f.address, { token: "wrong-token" });
  await c.receive(5000);
  f.calls[0].emit("error", Object.assign(new Error("no"), { code: status.UNAUTHENTICATED, details: "wrong token" }));
  await assert.rejects(c.receive(5000), (e: unknown) => e instanceof SidecarError && e.code === status.UNAUTHENTICATED);
  assert.deepEqual(f.tokens, ["Bearer wrong-token"]);
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(c.streamsOpened, 1);
});

test("options are checked up front, never showing the token", () => {
  assert.throws(() => new Consumer("127.0.0.1:1", { token: "a", tokenFile: file("token") }), /not both/);
  assert.throws(() => new Consumer("127.0.0.1:1", { token: "two\nlines" }), (e: Error) => !e.message.includes("two"));
  assert.throws(() => new Consumer("127.0.0.1:1", { tls: { cert: file("app.crt") } }).connect(), /both cert and key/);
  assert.throws(() => new Consumer("127.0.0.1:1", { tokenFile: file("absent") }).connect(), /token file/);
  assert.throws(() => new Consumer("127.0.0.1:1", { tls: { ca: file("absent.pem") } }).connect(), /CA file/);
});
