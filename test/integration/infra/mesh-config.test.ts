import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { ensureEnvoy, envoyValidate } from "../../../deploy/local/provision/envoy.js";
import { ROOT } from "../../../deploy/local/provision/versions.js";
import { identities, instanceNames, loadTopology, spiffeId, type Topology } from "../../../deploy/mesh/topology.js";
import type { MeshInstance } from "../../../deploy/mesh/sidecar.js";
import { writeMesh, type WrittenEnvoy } from "../../../deploy/mesh/write.js";

// The whole generated mesh (coordinator=2, ledger=1, config=1, worker=2, and
// the edge) must pass `envoy --mode validate`, with certificates laid out as
// `taskmesh certs` lays them out (a throwaway CA made with openssl here).

const dir = mkdtempSync(join(tmpdir(), "taskmesh-test-mesh-"));
const stateDir = join(dir, "state");
let topology: Topology;
let written: WrittenEnvoy[];

/** A CA and one leaf per identity with its SPIFFE URI SAN, plus the SDS files Envoy reads. */
function makeTestCerts(certsDir: string, t: Topology): void {
  mkdirSync(certsDir, { recursive: true });
  const openssl = (...args: string[]): void => void execFileSync("openssl", args, { cwd: certsDir, stdio: "pipe" });
  openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
    "-days", "1", "-subj", "/CN=taskmesh test CA", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign");
  writeFileSync(join(certsDir, "sds-ca.yaml"), sds("mesh-ca", { validation_context: { trusted_ca: { filename: join(certsDir, "ca.pem") } } }));
  for (const name of identities(t)) {
    const d = join(certsDir, name);
    mkdirSync(d, { recursive: true });
    writeFileSync(join(d, "ext.cnf"), `subjectAltName=URI:${spiffeId(t, name)}\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=critical,digitalSignature\n`);
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", join(d, "key.pem"), "-out", join(d, "csr.pem"), "-subj", `/CN=${name}`);
    openssl("x509", "-req", "-in", join(d, "csr.pem"), "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", join(d, "cert.pem"), "-days", "1", "-extfile", join(d, "ext.cnf"));
    writeFileSync(join(d, "sds-cert.yaml"), sds("mesh-cert", { tls_certificate: { certificate_chain: { filename: join(d, "cert.pem") }, private_key: { filename: join(d, "key.pem") } } }));
  }
}

function sds(name: string, secret: object): string {
  return JSON.stringify({ resources: [{ "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret", name, ...secret }] }, null, 2);
}

beforeAll(async () => {
  await ensureEnvoy();
  topology = loadTopology();
  makeTestCerts(join(stateDir, "certs"), topology);
  let port = 30_000;
  const instances: MeshInstance[] = instanceNames(topology, { coordinator: 2, ledger: 1, config: 1, worker: 2 }).map(({ name, service }) => ({
    name, service, appPort: port++, inboundPort: port++, outboundPort: port++, adminPort: port++,
  }));
  written = writeMesh({
    topology, stateDir, instances, otlpGrpcPort: 4317,
    edge: { port: 8080, adminPort: 9901, descriptorSetPath: join(ROOT, "gen/descriptor.binpb") },
  });
}, 300_000);

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("generated mesh configs", () => {
  it("has one sidecar per instance and the edge, under <stateDir>/envoy/", () => {
    expect(written.map((w) => w.name).sort()).toEqual(["config-0", "coordinator-0", "coordinator-1", "edge", "ledger-0", "worker-0", "worker-1"]);
    for (const w of written) expect(w.configPath).toBe(join(stateDir, "envoy", `${w.name}.yaml`));
  });

  it("every config passes envoy --mode validate", async () => {
    const results = await Promise.allSettled(written.map((w) => envoyValidate(w.configPath)));
    const failures = results.flatMap((r, i) => (r.status === "rejected" ? [`${written[i]!.name}: ${(r.reason as Error).message}`] : []));
    expect(failures).toEqual([]);
  }, 120_000);

  it("balances over every replica: the worker's coordinator cluster holds both coordinators, with mTLS and the health service name", () => {
    const worker = parse(readFileSync(join(stateDir, "envoy", "worker-0.yaml"), "utf8"));
    const cluster = worker.static_resources.clusters.find((c: { name: string }) => c.name === "coordinator");
    const coordinators = written.filter((w) => w.service === "coordinator").map((w) => w.ports.inbound);
    const ports = cluster.load_assignment.endpoints[0].lb_endpoints.map((e: { endpoint: { address: { socket_address: { port_value: number } } } }) => e.endpoint.address.socket_address.port_value);
    expect(ports).toEqual(coordinators);
    expect(cluster.lb_policy).toBe("LEAST_REQUEST");
    expect(cluster.health_checks[0].grpc_health_check.service_name).toBe("taskmesh.coordinator.v1.TaskService");
    expect(cluster.transport_socket.typed_config.common_tls_context.combined_validation_context.default_validation_context.match_typed_subject_alt_names)
      .toEqual([{ san_type: "URI", matcher: { exact: "spiffe://taskmesh.local/coordinator" } }]);
  });
});
