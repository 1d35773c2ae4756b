import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { Metadata, credentials, type ChannelCredentials } from "@grpc/grpc-js";
import { execa } from "execa";
import { ensureMeshCerts, type MeshCerts } from "@taskmesh/local/certs";
import { ensureEnvoy, envoySpec, envoyValidate } from "@taskmesh/local/provision/envoy";
import { freePort } from "@taskmesh/local/secrets";
import { runProcess, type RunningProcess } from "@taskmesh/local/supervisor";
import { GetTaskRequest, GetTaskResponse, TaskServiceService } from "@taskmesh/contracts/gen/taskmesh/coordinator/v1/task_service";
import { Code, MeshServer, createClient, createLogger, notFound, type ServiceHandlers } from "@taskmesh/kit";
import { ROOT } from "@taskmesh/local/provision/versions";
import { identities, instanceNames, loadTopology, spiffeId, type Topology } from "@taskmesh/mesh/topology";
import type { MeshInstance } from "../../../packages/mesh/src/sidecar.js";
import { toYaml, writeMesh, type WrittenEnvoy } from "../../../packages/mesh/src/write.js";
import { sidecarConfig } from "../../../packages/mesh/src/sidecar.js";
import { certPaths } from "../../../packages/mesh/src/tls.js";
import { ACCESS_LOG_SLOW_MS, TRACE_EXPORT_BATCH, TRACE_EXPORT_INTERVAL_MS } from "../../../packages/mesh/src/observability.js";

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
    edge: { port: 8080, adminPort: 9901, descriptorSetPath: join(ROOT, "packages/contracts/gen/descriptor.binpb") },
  });
}, 300_000);

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("generated mesh configs", () => {
  it("has one sidecar per instance and the edge, under <stateDir>/envoy/", () => {
    expect(written.map((w) => w.name).sort()).toEqual(["config-0", "coordinator-0", "coordinator-1", "edge", "events-0", "identity-0", "ledger-0", "ratelimit-0", "worker-0", "worker-1"]);
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

  it("with an endpoints folder (up), every mesh cluster follows its service's endpoints file (EDS over a watched file), and the configs still validate", async () => {
    const endpointsDir = join(dir, "live", "endpoints");
    const live = writeMesh({
      topology, stateDir: join(dir, "live"), instances: written.filter((w) => w.kind === "sidecar").map((w) => ({
        name: w.name, service: w.service!, appPort: w.ports.app!, inboundPort: w.ports.inbound!, outboundPort: w.ports.outbound!, adminPort: w.ports.admin!,
      })), otlpGrpcPort: 4317, endpointsDir, sdsPaths: (identity) => certPaths(stateDir, identity),
      edge: { port: 8080, adminPort: 9901, descriptorSetPath: join(ROOT, "packages/contracts/gen/descriptor.binpb") },
    });
    const worker = parse(readFileSync(live.find((w) => w.name === "worker-0")!.configPath, "utf8"));
    const cluster = worker.static_resources.clusters.find((c: { name: string }) => c.name === "coordinator");
    expect(cluster.type).toBe("EDS");
    expect(cluster.load_assignment).toBeUndefined();
    expect(cluster.eds_cluster_config.eds_config.path_config_source).toEqual({ path: join(endpointsDir, "coordinator.json"), watched_directory: { path: endpointsDir } });
    const file = JSON.parse(readFileSync(join(endpointsDir, "coordinator.json"), "utf8"));
    const ports = file.resources[0].endpoints[0].lb_endpoints.map((e: { endpoint: { address: { socket_address: { port_value: number } } } }) => e.endpoint.address.socket_address.port_value);
    expect(ports).toEqual(written.filter((w) => w.service === "coordinator").map((w) => w.ports.inbound));
    expect(file.resources[0]["@type"]).toBe("type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment");
    // The edge reaches every service the same way; the local app and the collector stay fixed.
    const edge = parse(readFileSync(live.find((w) => w.name === "edge")!.configPath, "utf8"));
    expect(edge.static_resources.clusters.find((c: { name: string }) => c.name === "coordinator").type).toBe("EDS");
    expect(worker.static_resources.clusters.find((c: { name: string }) => c.name === "local_app").type).toBe("STATIC");
    const results = await Promise.allSettled(live.map((w) => envoyValidate(w.configPath)));
    expect(results.flatMap((r, i) => (r.status === "rejected" ? [`${live[i]!.name}: ${(r.reason as Error).message}`] : []))).toEqual([]);
  }, 120_000);

  it("the edge strips client-sent claims, checks tokens except on the open paths, and asks ratelimit", () => {
    const edge = parse(readFileSync(join(stateDir, "envoy", "edge.yaml"), "utf8"));
    const hcm = edge.static_resources.listeners[0].filter_chains[0].filters[0].typed_config;
    const names = hcm.http_filters.map((f: { name: string }) => f.name);
    expect(names).toEqual([
      "envoy.filters.http.cors", "envoy.filters.http.grpc_web", "envoy.filters.http.header_mutation", "envoy.filters.http.jwt_authn",
      "envoy.filters.http.grpc_json_transcoder", "taskmesh.edge.local_ratelimit", "envoy.filters.http.ratelimit", "envoy.filters.http.router",
    ]);
    const jwt = hcm.http_filters[3].typed_config;
    const open = jwt.rules.filter((r: { requires?: unknown }) => r.requires === undefined).map((r: { match: object }) => Object.values(r.match)[0]);
    expect(open).toEqual(expect.arrayContaining(["/taskmesh.identity.v1.IdentityService/IssueToken", "/.well-known/jwks.json", "/grpc.health.v1.Health/", "/grpc.reflection."]));
    expect(jwt.rules.at(-1)).toEqual({ match: { prefix: "/" }, requires: { provider_name: "taskmesh" } });
    expect(hcm.http_filters[5].config_discovery.type_urls).toEqual(["type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"]);
    expect(hcm.http_filters[6].typed_config.rate_limited_as_resource_exhausted).toBe(true);
    expect(edge.static_resources.clusters.map((c: { name: string }) => c.name)).toEqual(expect.arrayContaining(["ratelimit", "identity", "edge-jwks"]));
  });
});

// A live mesh: two stand-in coordinator apps (TaskService.GetTask only)
// behind their generated sidecars, a worker's sidecar and the edge, with the
// certificates of `taskmesh certs`; calls go through them over mTLS.
describe("a live sidecar pair and the edge", () => {
  const live = join(dir, "live");
  const apps: MeshServer[] = [];
  let envoys: RunningProcess[] = [];
  let mesh: WrittenEnvoy[] = [];
  let certs: MeshCerts;
  const port = (name: string, which: string): number => mesh.find((m) => m.name === name)!.ports[which]!;

  /** A coordinator stand-in: GetTask("t1") answers with the instance, the caller Envoy vouched for and the traceparent it got. */
  function standIn(instance: string): MeshServer {
    // Every other method of the definition answers NOT_FOUND.
    const stub = async (): Promise<never> => {
      throw notFound("RES_TASK_NOT_FOUND", "stand-in");
    };
    const handlers = Object.fromEntries(Object.keys(TaskServiceService).map((key) => [key, stub])) as unknown as ServiceHandlers<typeof TaskServiceService>;
    return new MeshServer({ name: "coordinator", logger: createLogger({ level: "silent" }), shutdownGraceMs: 500 }).addService(TaskServiceService, {
      ...handlers,
      getTask: async ({ id }, ctx) => {
        // "slow": answers like t1, after longer than the access log's slow threshold.
        if (id === "slow") await new Promise((r) => setTimeout(r, ACCESS_LOG_SLOW_MS + 100));
        else if (id !== "t1") throw notFound("RES_TASK_NOT_FOUND", `no task ${id}`);
        const header = (name: string): string => String(ctx.metadata.get(name)[0] ?? "");
        // The sidecar tells the app who called (SANITIZE_SET: never taken from the caller).
        return GetTaskResponse.fromPartial({ task: { id, capability: "echo", workerId: header("x-forwarded-client-cert"), output: { instance, traceparent: header("traceparent") } } });
      },
    });
  }

  /** Polls an Envoy's admin `/clusters` until `predicate` holds for its text. */
  async function untilClusters(admin: number, predicate: (text: string) => boolean, what: string): Promise<void> {
    for (let i = 0; ; i++) {
      const clusters = await (await fetch(`http://127.0.0.1:${admin}/clusters`)).text();
      if (predicate(clusters)) return;
      if (i > 150) throw new Error(`${what} never happened:\n${clusters}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  const hostFlags = (name: string) => `coordinator::127.0.0.1:${port(name, "inbound")}::health_flags::`;

  beforeAll(async () => {
    certs = await ensureMeshCerts(live);
    const ports = new Set<number>();
    const free = async (): Promise<number> => {
      let p: number;
      do p = await freePort();
      while (ports.has(p));
      ports.add(p);
      return p;
    };
    const instances: MeshInstance[] = [];
    for (const name of ["coordinator-0", "coordinator-1"]) {
      const app = standIn(name);
      apps.push(app);
      const appPort = await app.listen("127.0.0.1:0");
      ports.add(appPort);
      app.markServing();
      instances.push({ name, service: "coordinator", appPort, inboundPort: await free(), outboundPort: await free(), adminPort: await free() });
    }
    instances.push({ name: "worker-0", service: "worker", appPort: await free(), inboundPort: await free(), outboundPort: await free(), adminPort: await free() });
    const otlpGrpcPort = await free();
    mesh = writeMesh({
      topology, stateDir: live, instances, otlpGrpcPort, inboundAddress: "127.0.0.1",
      // Routing, balancing and mTLS only: tokens and rate limits are tested with the real identity and ratelimit services (test/e2e/identity.test.ts).
      edge: { port: await free(), adminPort: await free(), descriptorSetPath: join(ROOT, "packages/contracts/gen/descriptor.binpb"), auth: false, rateLimit: false },
    });
    // One more worker sidecar, generated as under TASKMESH_ACCESS_LOG=all: it logs every request; the others keep the default.
    const everything: MeshInstance = { name: "worker-1", service: "worker", appPort: await free(), inboundPort: await free(), outboundPort: await free(), adminPort: await free() };
    const config = sidecarConfig({ topology, stateDir: live, instances, otlpGrpcPort, inboundAddress: "127.0.0.1", accessLog: { all: true } }, everything);
    const configPath = join(live, "envoy", "worker-1.yaml");
    writeFileSync(configPath, toYaml(config));
    mesh.push({ name: "worker-1", kind: "sidecar", service: "worker", config, configPath, ports: { outbound: everything.outboundPort, admin: everything.adminPort } });
    const logDir = join(live, "logs");
    envoys = await Promise.all(mesh.map((m) => runProcess(envoySpec({ name: m.name, configPath: m.configPath, adminPort: m.ports.admin!, logDir, kind: m.kind }), { logDir })));
    // Wait until the worker's and the edge's Envoys see both coordinators healthy (gRPC health checks over mTLS).
    for (const admin of [port("worker-0", "admin"), port("worker-1", "admin"), port("edge", "admin")]) {
      await untilClusters(admin, (c) => c.includes(`${hostFlags("coordinator-0")}healthy`) && c.includes(`${hostFlags("coordinator-1")}healthy`), "coordinators healthy");
    }
  }, 120_000);

  afterAll(async () => {
    await Promise.all(envoys.map((e) => e.stop()));
    await Promise.all(apps.map((a) => a.shutdown()));
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
    const described = await execa("grpcurl", ["-plaintext", edge, "describe", "taskmesh.coordinator.v1.TaskService.GetTask"], { reject: false });
    expect(described.stdout, described.stderr).toMatch(/rpc GetTask \( \.taskmesh\.coordinator\.v1\.GetTaskRequest \) returns \( \.taskmesh\.coordinator\.v1\.GetTaskResponse \)/);
    const get = await execa("grpcurl", ["-plaintext", "-d", '{"id":"t1"}', edge, "taskmesh.coordinator.v1.TaskService/GetTask"], { reject: false });
    expect(JSON.parse(get.stdout || "{}"), get.stderr).toMatchObject({ task: { id: "t1", capability: "echo" } });
    expect(JSON.parse(get.stdout).task.workerId).toContain("spiffe://taskmesh.local/edge");
    const json = await fetch(`http://${edge}/v1/tasks/t1`);
    expect(json.status).toBe(200);
    expect(await json.json()).toMatchObject({ task: { id: "t1" } });
    const missing = await fetch(`http://${edge}/v1/tasks/t2`);
    expect(missing.status).toBe(404);
  });

  it("balances over both coordinators and starts a W3C trace", async () => {
    // Both replicas must have passed worker-0's sidecar's health checks first (on a loaded machine the first ones can fail).
    const admin = `http://127.0.0.1:${port("worker-0", "admin")}`;
    for (let i = 0; ; i++) {
      const flags = (await (await fetch(`${admin}/clusters`)).text()).split("\n").filter((l) => /^coordinator::[^:]+:\d+::health_flags::/.test(l));
      if (flags.length === 2 && flags.every((l) => l.endsWith("::healthy"))) break;
      if (i > 100) throw new Error(`the coordinator replicas never both passed the health checks:\n${flags.join("\n")}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const client = createClient(TaskServiceService, `127.0.0.1:${port("worker-0", "outbound")}`);
    const seen = new Map<string, string>();
    try {
      // As an app inside a sampled trace calls (the kit's clients add the header then): sidecars start no traces of their own.
      const sampled = new Metadata();
      sampled.set("x-envoy-force-trace", "true");
      // Least request picks two hosts at random per call; right after a health transition Envoy
      // has been seen to send a few hundred calls (well under a second) to one replica, so keep
      // calling for up to 10 s, pausing between rounds.
      const deadline = Date.now() + 10_000;
      while (seen.size < 2 && Date.now() < deadline) {
        for (let i = 0; i < 50 && seen.size < 2; i++) {
          const { task } = await client.getTask(GetTaskRequest.fromPartial({ id: "t1" }), { metadata: sampled });
          seen.set(String(task?.output?.instance), String(task?.output?.traceparent));
        }
        await new Promise((r) => setTimeout(r, 100));
      }
      // Without it, the call is not traced: a sidecar samples nothing by itself.
      const { task: untraced } = await client.getTask(GetTaskRequest.fromPartial({ id: "t1" }));
      expect(String(untraced?.output?.traceparent)).not.toMatch(/-01$/);
    } finally {
      client.close();
    }
    const clusters = await (await fetch(`http://127.0.0.1:${port("worker-0", "admin")}/clusters`)).text();
    // On failure, say why: per-host counters plus the cluster's retries, connect failures and ejections.
    const stats = await (await fetch(`http://127.0.0.1:${port("worker-0", "admin")}/stats?filter=${encodeURIComponent("^cluster\\.coordinator\\.(upstream_rq_retry|upstream_cx_connect_fail|upstream_cx_total|outlier_detection|health_check\\.(success|failure))")}`)).text();
    const why = clusters.split("\n").filter((l) => /::(rq_total|rq_error|cx_connect_fail|health_flags|cx_active)::/.test(l)).join("\n") + "\n" + stats;
    expect([...seen.keys()].sort(), why).toEqual(["coordinator-0", "coordinator-1"]);
    expect(seen.get("coordinator-0")).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
  });

  /** A fresh W3C trace id, and the `traceparent` of a sampled call in that trace. */
  function newTrace(): { traceId: string; traceparent: string } {
    const traceId = randomBytes(16).toString("hex");
    return { traceId, traceparent: `00-${traceId}-${randomBytes(8).toString("hex")}-01` };
  }

  /** The JSON access-log lines an Envoy has written so far (its stdout, in the supervisor's `<name>.log`). */
  function accessLines(name: string): Record<string, string | number>[] {
    return readFileSync(join(live, "logs", `${name}.log`), "utf8").split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as Record<string, string | number>);
  }

  /**
   * Waits for the access-log line with `traceId` in one of the `names` Envoys' logs.
   * Envoy writes its stdout buffer at intervals, and in order: once this line is there,
   * every line logged before it is too.
   */
  async function lineOf(names: readonly string[], traceId: string): Promise<Record<string, string | number>> {
    for (let i = 0; ; i++) {
      const line = names.flatMap(accessLines).find((l) => l.trace_id === traceId);
      if (line) return line;
      if (i > 200) throw new Error(`no access log line with trace id ${traceId} in ${names.join(", ")}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  it("logs by default only failed and slow requests, each with its trace id, at every hop", async () => {
    const ok = newTrace(), failed = newTrace(), slow = newTrace();
    const client = createClient(TaskServiceService, `127.0.0.1:${port("worker-0", "outbound")}`, { timeoutMs: 3000 });
    const traced = (traceparent: string): Metadata => {
      const m = new Metadata();
      m.set("traceparent", traceparent);
      m.set("x-envoy-force-trace", "true");
      return m;
    };
    try {
      const { task } = await client.getTask(GetTaskRequest.fromPartial({ id: "t1" }), { metadata: traced(ok.traceparent) });
      expect(String(task?.output?.traceparent)).toContain(ok.traceId);
      await expect(client.getTask(GetTaskRequest.fromPartial({ id: "t2" }), { metadata: traced(failed.traceparent) })).rejects.toMatchObject({ code: Code.NOT_FOUND });
      await client.getTask(GetTaskRequest.fromPartial({ id: "slow" }), { metadata: traced(slow.traceparent) });
    } finally {
      client.close();
    }
    // At the edge: HTTP/JSON that succeeds, that answers 404 from the app, and a path the edge does not expose.
    const edge = `http://127.0.0.1:${port("edge", "http")}`;
    const jsonOk = newTrace(), jsonMissing = newTrace(), unknownPath = newTrace();
    expect((await fetch(`${edge}/v1/tasks/t1`, { headers: { traceparent: jsonOk.traceparent } })).status).toBe(200);
    expect((await fetch(`${edge}/v1/tasks/t2`, { headers: { traceparent: jsonMissing.traceparent } })).status).toBe(404);
    expect((await fetch(`${edge}/no/such/path`, { headers: { traceparent: unknownPath.traceparent } })).status).toBe(404);

    const coordinators = ["coordinator-0", "coordinator-1"];
    const [outbound, inbound, slowLine, edgeMissing, edgeUnknown] = await Promise.all([
      lineOf(["worker-0"], failed.traceId), lineOf(coordinators, failed.traceId), lineOf(["worker-0"], slow.traceId),
      lineOf(["edge"], jsonMissing.traceId), lineOf(["edge"], unknownPath.traceId),
    ]);
    expect(outbound).toMatchObject({ listener: "outbound", path: "/taskmesh.coordinator.v1.TaskService/GetTask", upstream_cluster: "coordinator", grpc_status: "NotFound" });
    expect(inbound).toMatchObject({ listener: "inbound", upstream_cluster: "local_app", grpc_status: "NotFound", peer: "spiffe://taskmesh.local/worker" });
    expect(slowLine).toMatchObject({ listener: "outbound", grpc_status: "OK" });
    expect(Number(slowLine.duration_ms)).toBeGreaterThanOrEqual(ACCESS_LOG_SLOW_MS);
    expect(edgeMissing).toMatchObject({ listener: "edge", status: 404 });
    expect(edgeUnknown).toMatchObject({ listener: "edge", status: 404, path: "/no/such/path" });
    // The successful calls, logged before those lines if at all, are not there; nor are the sidecars' health checks.
    // (One that happened to take the slow threshold or longer, on a loaded machine, is rightly logged as slow.)
    const fast = (l: Record<string, unknown>): boolean => Number(l.duration_ms) < ACCESS_LOG_SLOW_MS;
    const sidecarLines = ["worker-0", ...coordinators].flatMap(accessLines).filter(fast);
    expect(sidecarLines.filter((l) => l.trace_id === ok.traceId)).toEqual([]);
    expect(sidecarLines.filter((l) => String(l.path).startsWith("/grpc.health.v1.Health/"))).toEqual([]);
    expect(accessLines("edge").filter(fast).filter((l) => l.trace_id === jsonOk.traceId)).toEqual([]);
  });

  it("logs every request, the successful ones too, when generated with accessLog.all (TASKMESH_ACCESS_LOG=all)", async () => {
    const ok = newTrace();
    const client = createClient(TaskServiceService, `127.0.0.1:${port("worker-1", "outbound")}`, { timeoutMs: 3000 });
    try {
      const m = new Metadata();
      m.set("traceparent", ok.traceparent);
      m.set("x-envoy-force-trace", "true");
      await client.getTask(GetTaskRequest.fromPartial({ id: "t1" }), { metadata: m });
    } finally {
      client.close();
    }
    expect(await lineOf(["worker-1"], ok.traceId)).toMatchObject({
      listener: "outbound", path: "/taskmesh.coordinator.v1.TaskService/GetTask", upstream_cluster: "coordinator", status: 200, grpc_status: "OK",
    });
  });

  it("logs every request of a running Envoy once its slow threshold is set to 0 at the admin port, and only failures again after", async () => {
    const admin = `http://127.0.0.1:${port("worker-0", "admin")}`;
    const client = createClient(TaskServiceService, `127.0.0.1:${port("worker-0", "outbound")}`, { timeoutMs: 3000 });
    const call = async (id: string): Promise<string> => {
      const t = newTrace();
      const m = new Metadata();
      m.set("traceparent", t.traceparent);
      m.set("x-envoy-force-trace", "true");
      await client.getTask(GetTaskRequest.fromPartial({ id }), { metadata: m }).catch(() => undefined);
      return t.traceId;
    };
    try {
      expect((await fetch(`${admin}/runtime_modify?access_log.slow_ms=0`, { method: "POST" })).status).toBe(200);
      const logged = await call("t1");
      expect((await fetch(`${admin}/runtime_modify?access_log.slow_ms=${ACCESS_LOG_SLOW_MS}`, { method: "POST" })).status).toBe(200);
      const quiet = await call("t1");
      const marker = await call("t2");
      expect(await lineOf(["worker-0"], logged)).toMatchObject({ listener: "outbound", grpc_status: "OK" });
      await lineOf(["worker-0"], marker);
      expect(accessLines("worker-0").filter((l) => l.trace_id === quiet && Number(l.duration_ms) < ACCESS_LOG_SLOW_MS)).toEqual([]);
    } finally {
      client.close();
    }
  });

  it("exports spans in batches: every Envoy's runtime sets its tracer's batch size and flush interval", async () => {
    for (const name of ["worker-0", "coordinator-0", "edge"]) {
      const { entries } = await (await fetch(`http://127.0.0.1:${port(name, "admin")}/runtime`)).json() as { entries: Record<string, { final_value: string }> };
      expect([name, entries["tracing.opentelemetry.min_flush_spans"]?.final_value, entries["tracing.opentelemetry.flush_interval_ms"]?.final_value])
        .toEqual([name, String(TRACE_EXPORT_BATCH), String(TRACE_EXPORT_INTERVAL_MS)]);
    }
  });

  it("sends nothing to a replica whose health is NOT_SERVING, and uses it again once it is SERVING", async () => {
    const admin = port("worker-0", "admin");
    apps[1]!.setServiceHealth("taskmesh.coordinator.v1.TaskService", false);
    await untilClusters(admin, (c) => c.includes(`${hostFlags("coordinator-1")}/failed_active_hc`), "coordinator-1 failing its health check");
    const client = createClient(TaskServiceService, `127.0.0.1:${port("worker-0", "outbound")}`);
    try {
      const instances = new Set<string>();
      for (let i = 0; i < 20; i++) instances.add(String((await client.getTask(GetTaskRequest.fromPartial({ id: "t1" }))).task?.output?.instance));
      expect([...instances]).toEqual(["coordinator-0"]);
    } finally {
      client.close();
    }
    apps[1]!.setServiceHealth("taskmesh.coordinator.v1.TaskService", true);
    await untilClusters(admin, (c) => c.includes(`${hostFlags("coordinator-1")}healthy`), "coordinator-1 healthy again");
  });

  it("keeps answering safe calls while one replica's app goes away", async () => {
    const client = createClient(TaskServiceService, `127.0.0.1:${port("worker-0", "outbound")}`);
    try {
      const stopping = apps[1]!.shutdown();
      const outcomes: string[] = [];
      const until = Date.now() + 3000;
      while (Date.now() < until) {
        outcomes.push(await client.getTask(GetTaskRequest.fromPartial({ id: "t1" })).then((r) => String(r.task?.output?.instance), (e: { code?: number }) => `error ${e.code}`));
      }
      await stopping;
      // At most the call in flight when the replica went away fails (retries cover the rest); the others all succeed.
      const failed = outcomes.filter((o) => o.startsWith("error"));
      expect(failed.length, failed.join(", ")).toBeLessThanOrEqual(1);
      expect(outcomes.length - failed.length).toBeGreaterThan(10);
      expect(outcomes.at(-1)).toBe("coordinator-0");
      await untilClusters(port("worker-0", "admin"), (c) => c.includes(`${hostFlags("coordinator-1")}/failed_active_hc`), "coordinator-1 marked unhealthy");
    } finally {
      client.close();
    }
  });
});
