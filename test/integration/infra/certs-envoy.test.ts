import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, type TLSSocket } from "node:tls";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { CA_SECRET, CERT_SECRET, ensureMeshCerts, rotateMeshCerts, sdsConfigSource, type MeshCerts } from "@taskmesh/local/certs";
import { ensureEnvoy, envoySpec, envoyValidate } from "@taskmesh/local/provision/envoy";
import { freePort } from "@taskmesh/local/secrets";
import { runProcess, type RunningProcess } from "@taskmesh/local/supervisor";

// The pinned Envoy reads the mesh certificates through file-based SDS and picks up a rotation without a restart.
const dir = mkdtempSync(join(tmpdir(), "taskmesh-test-certs-envoy-"));
const logDir = join(dir, "logs");
let mesh: MeshCerts;
let adminPort: number;
let listenerPort: number;
let running: RunningProcess | undefined;

/** Admin on 127.0.0.1 and one TLS listener (identity `ledger`, client certificate required, checked against the mesh CA) that answers directly. */
function bootstrap(certs: MeshCerts, admin: number, listener: number): string {
  const server = certs.identities.ledger!;
  return stringify({
    // File-based SDS needs the node's id and cluster (Envoy refuses the config without them).
    node: { id: "ledger-0-sidecar", cluster: "ledger" },
    admin: { address: { socket_address: { address: "127.0.0.1", port_value: admin } } },
    static_resources: {
      listeners: [{
        name: "inbound",
        address: { socket_address: { address: "127.0.0.1", port_value: listener } },
        filter_chains: [{
          transport_socket: {
            name: "envoy.transport_sockets.tls",
            typed_config: {
              "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
              require_client_certificate: true,
              common_tls_context: {
                tls_certificate_sds_secret_configs: [{ name: CERT_SECRET, sds_config: sdsConfigSource(server.sdsPath) }],
                validation_context_sds_secret_config: { name: CA_SECRET, sds_config: sdsConfigSource(certs.sdsCaPath) },
              },
            },
          },
          filters: [{
            name: "envoy.filters.network.http_connection_manager",
            typed_config: {
              "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
              stat_prefix: "inbound",
              route_config: {
                virtual_hosts: [{ name: "all", domains: ["*"], routes: [{ match: { prefix: "/" }, direct_response: { status: 200, body: { inline_string: "hello over mtls" } } }] }],
              },
              http_filters: [{ name: "envoy.filters.http.router", typed_config: { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" } }],
            },
          }],
        }],
      }],
    },
  });
}

/** A TLS connection to the listener as `client` (or with no client certificate); resolves with the server certificate's serial and the reply to one HTTP request. */
async function call(client: { certPath: string; keyPath: string } | undefined): Promise<{ serial: string; reply: string }> {
  const socket: TLSSocket = connect({
    host: "127.0.0.1",
    port: listenerPort,
    servername: "localhost",
    ca: readFileSync(mesh.caPath),
    ...(client ? { cert: readFileSync(client.certPath), key: readFileSync(client.keyPath) } : {}),
  });
  try {
    await new Promise<void>((resolve, reject) => socket.once("secureConnect", resolve).once("error", reject));
    const serial = socket.getPeerX509Certificate()!.serialNumber.toLowerCase();
    socket.write("GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let reply = "";
    // Done at the body (the direct response's last bytes), not at close: Envoy waits up to 1 s (delayed_close_timeout) for the client to close first.
    await new Promise<void>((resolve, reject) => {
      socket.on("data", (d: Buffer) => {
        reply += d.toString();
        if (reply.includes("hello over mtls")) resolve();
      }).once("end", resolve).once("close", resolve).once("error", reject);
    });
    return { serial, reply };
  } finally {
    socket.destroy();
  }
}

/** The serial numbers of the certificate chains Envoy serves now (admin `/certs`). */
async function servedSerials(): Promise<string[]> {
  const body = (await (await fetch(`http://127.0.0.1:${adminPort}/certs`)).json()) as { certificates: { cert_chain?: { serial_number: string }[] }[] };
  return body.certificates.flatMap((c) => c.cert_chain ?? []).map((c) => c.serial_number.toLowerCase());
}

beforeAll(async () => {
  await ensureEnvoy();
  mesh = await ensureMeshCerts(join(dir, "state"));
  adminPort = await freePort();
  do listenerPort = await freePort();
  while (listenerPort === adminPort);
}, 300_000);

afterAll(async () => {
  await running?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe("mesh certificates in Envoy", () => {
  it("validate: a listener with mTLS from the SDS files (watched directories) is accepted", async () => {
    const configPath = join(dir, "envoy.yaml");
    writeFileSync(configPath, bootstrap(mesh, adminPort, listenerPort));
    await expect(envoyValidate(configPath)).resolves.toBeUndefined();
  });

  it("serves the identity's certificate, requires a mesh client certificate, and takes a rotation without a restart", async () => {
    const configPath = join(dir, "envoy.yaml");
    running = await runProcess(envoySpec({ name: "envoy-certs", configPath, adminPort, logDir, kind: "edge", ports: { app: listenerPort } }), { logDir });
    const pid = running.supervisor.status()[0]!.pid;

    const before = await call(mesh.identities.edge);
    expect(before.serial).toBe(mesh.identities.ledger!.serial);
    expect(before.reply).toMatch(/^HTTP\/1\.1 200/);
    expect(before.reply).toContain("hello over mtls");
    expect(await servedSerials()).toContain(mesh.identities.ledger!.serial);
    // No client certificate: Envoy ends the handshake with TLS 1.3's certificate_required alert.
    await expect(call(undefined)).rejects.toThrow(/certificate required|alert number 116/);

    // A steady stream of new connections while the server's certificate is rotated: none fails.
    let stop = false;
    const results: { ok: number; failed: unknown[]; serials: Set<string> } = { ok: 0, failed: [], serials: new Set() };
    const stream = (async () => {
      while (!stop) {
        try {
          const r = await call(mesh.identities.edge);
          if (!r.reply.includes("hello over mtls")) throw new Error(`unexpected reply: ${r.reply}`);
          results.ok++;
          results.serials.add(r.serial);
        } catch (error) {
          results.failed.push(error);
        }
      }
    })();
    const t = Date.now();
    const { rotated, identities } = await rotateMeshCerts(join(dir, "state"), ["ledger"]);
    const fresh = identities.ledger!.serial;
    expect(rotated[0]!.from).toBe(before.serial);
    const deadline = Date.now() + 10_000;
    while (!(await servedSerials()).includes(fresh) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    expect(await servedSerials()).toContain(fresh);
    console.info(`certs: Envoy serves the rotated certificate ${Date.now() - t} ms after rotate began`);
    expect(await servedSerials()).not.toContain(before.serial);
    await new Promise((r) => setTimeout(r, 200));
    stop = true;
    await stream;
    expect(results.failed).toEqual([]);
    expect(results.ok).toBeGreaterThan(5);
    expect(results.serials).toContain(fresh);
    console.info(`certs: ${results.ok} mTLS connections during the rotation, none failed`);

    const after = await call(mesh.identities.edge);
    expect(after.serial).toBe(fresh);
    expect(after.reply).toContain("hello over mtls");
    // The client's own rotation is accepted too: the CA did not change.
    await rotateMeshCerts(join(dir, "state"), ["edge"]);
    expect((await call(mesh.identities.edge)).reply).toContain("hello over mtls");
    expect(running.supervisor.status()[0]).toMatchObject({ pid, state: "running" });
  });
});
