import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { credentials, type ChannelCredentials } from "@grpc/grpc-js";
import { execa } from "execa";
import { ensureMeshCerts, type MeshCerts } from "../../../deploy/local/certs.js";
import { ensureEnvoy, envoySpec, envoyValidate } from "../../../deploy/local/provision/envoy.js";
import { freePort } from "../../../deploy/local/secrets.js";
import { runProcess, type RunningProcess } from "../../../deploy/local/supervisor.js";
import { GetTaskRequest, GetTaskResponse, TaskServiceService } from "../../../gen/taskmesh/coordinator/v1/task_service.js";
import { Code, MeshServer, createClient, createLogger, notFound, type ServiceHandlers } from "../../../services/kit/src/index.js";
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

// A live pair: a stand-in coordinator app (TaskService.GetTask only) behind
// its generated sidecar, a worker's sidecar and the edge, with the
// certificates of `taskmesh certs`; calls go through them over mTLS.
describe("a live sidecar pair and the edge", () => {
  const live = join(dir, "live");
  let app: MeshServer;
  let envoys: RunningProcess[] = [];
  let mesh: WrittenEnvoy[] = [];
  let certs: MeshCerts;
  const port = (name: string, which: string): number => mesh.find((m) => m.name === name)!.ports[which]!;

  beforeAll(async () => {
    certs = await ensureMeshCerts(live);
    // Every other method of the definition answers NOT_FOUND.
    const stub = async (): Promise<never> => {
      throw notFound("RES_TASK_NOT_FOUND", "stand-in");
    };
    const handlers = Object.fromEntries(Object.keys(TaskServiceService).map((key) => [key, stub])) as unknown as ServiceHandlers<typeof TaskServiceService>;
    app = new MeshServer({ name: "coordinator", logger: createLogger({ level: "silent" }), shutdownGraceMs: 500 }).addService(TaskServiceService, {
      ...handlers,
      getTask: async ({ id }, ctx) => {
        if (id !== "t1") throw notFound("RES_TASK_NOT_FOUND", `no task ${id}`);
        // The sidecar tells the app who called (SANITIZE_SET: never taken from the caller).
        return GetTaskResponse.fromPartial({ task: { id, capability: "echo", workerId: String(ctx.metadata.get("x-forwarded-client-cert")[0] ?? "") } });
      },
    });
    const appPort = await app.listen("127.0.0.1:0");
    app.markServing();
    const ports = new Set<number>([appPort]);
    const free = async (): Promise<number> => {
      let p: number;
      do p = await freePort();
      while (ports.has(p));
      ports.add(p);
      return p;
    };
    const instances: MeshInstance[] = [
      { name: "coordinator-0", service: "coordinator", appPort, inboundPort: await free(), outboundPort: await free(), adminPort: await free() },
      { name: "worker-0", service: "worker", appPort: await free(), inboundPort: await free(), outboundPort: await free(), adminPort: await free() },
    ];
    mesh = writeMesh({
      topology, stateDir: live, instances, otlpGrpcPort: await free(), inboundAddress: "127.0.0.1",
      edge: { port: await free(), adminPort: await free(), descriptorSetPath: join(ROOT, "gen/descriptor.binpb") },
    });
    const logDir = join(live, "logs");
    envoys = await Promise.all(mesh.map((m) => runProcess(envoySpec({ name: m.name, configPath: m.configPath, adminPort: m.ports.admin!, logDir, kind: m.kind }), { logDir })));
    // Wait until the worker's and the edge's Envoys see the coordinator healthy (gRPC health check over mTLS).
    for (const admin of [port("worker-0", "admin"), port("edge", "admin")]) {
      for (let i = 0; ; i++) {
        const clusters = await (await fetch(`http://127.0.0.1:${admin}/clusters`)).text();
        if (clusters.includes(`coordinator::127.0.0.1:${port("coordinator-0", "inbound")}::health_flags::healthy`)) break;
        if (i > 100) throw new Error(`coordinator never healthy:\n${clusters}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }, 120_000);

  afterAll(async () => {
    await Promise.all(envoys.map((e) => e.stop()));
    await app?.shutdown();
  });

  it("routes a worker's call through both sidecars with mTLS; the app learns the caller's SPIFFE ID", async () => {
    const client = createClient(TaskServiceService, `127.0.0.1:${port("worker-0", "outbound")}`);
    try {
      const { task } = await client.getTask(GetTaskRequest.fromPartial({ id: "t1" }));
      expect(task?.id).toBe("t1");
      expect(task?.workerId).toContain("URI=spiffe://taskmesh.local/worker");
      await expect(client.getTask(GetTaskRequest.fromPartial({ id: "t2" }))).rejects.toMatchObject({ code: Code.NOT_FOUND });
    } finally {
      client.close();
    }
  });

  it("refuses a caller without a client certificate, and a mesh identity the topology does not list", async () => {
    const inbound = `127.0.0.1:${port("coordinator-0", "inbound")}`;
    const ca = readFileSync(certs.caPath);
    // URI SANs only: the SPIFFE ID is what Envoy checks; here any server name will do.
    const verify = { checkServerIdentity: () => undefined };
    const as = (name: string) => credentials.createSsl(ca, readFileSync(certs.identities[name]!.keyPath), readFileSync(certs.identities[name]!.certPath), verify);
    const call = async (creds: ChannelCredentials): Promise<unknown> => {
      const client = createClient(TaskServiceService, inbound, { credentials: creds, timeoutMs: 3000, channelOptions: { "grpc.ssl_target_name_override": "coordinator" } });
      try {
        return await client.getTask(GetTaskRequest.fromPartial({ id: "t1" }));
      } finally {
        client.close();
      }
    };
    await expect(call(credentials.createSsl(ca, null, null, verify))).rejects.toMatchObject({ code: Code.UNAVAILABLE });
    await expect(call(as("ledger"))).rejects.toMatchObject({ code: Code.PERMISSION_DENIED });
    await expect(call(as("worker"))).resolves.toMatchObject({ task: { id: "t1" } });
  });

  it("serves reflection, gRPC and HTTP/JSON at the edge", async () => {
    const edge = `127.0.0.1:${port("edge", "http")}`;
    const list = await execa("grpcurl", ["-plaintext", edge, "list"], { reject: false });
    expect(list.stdout, list.stderr).toContain("taskmesh.coordinator.v1.TaskService");
    const get = await execa("grpcurl", ["-plaintext", "-d", '{"id":"t1"}', edge, "taskmesh.coordinator.v1.TaskService/GetTask"], { reject: false });
    expect(JSON.parse(get.stdout || "{}"), get.stderr).toMatchObject({ task: { id: "t1", capability: "echo" } });
    expect(JSON.parse(get.stdout).task.workerId).toContain("spiffe://taskmesh.local/edge");
    const json = await fetch(`http://${edge}/v1/tasks/t1`);
    expect(json.status).toBe(200);
    expect(await json.json()).toMatchObject({ task: { id: "t1" } });
    const missing = await fetch(`http://${edge}/v1/tasks/t2`);
    expect(missing.status).toBe(404);
  });
});
