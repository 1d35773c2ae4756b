import { execFileSync, spawnSync } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { ensureChecker, ensureCrds, ensureKustomize } from "../../../deploy/check/tools.js";
import { PORTS } from "../../../deploy/container/layout.js";
import { PROD_TRACE_PERCENT, staleDeploymentFiles } from "../../../deploy/generate.js";
import { ensureEnvoy, envoyValidate } from "@taskmesh/local/provision/envoy";
import { ROOT } from "@taskmesh/local/provision/versions";
import { loadTopology } from "@taskmesh/mesh/topology";
import { makeTestCerts } from "./support.js";

// The Kubernetes manifests as a cluster would take them: each overlay built
// by the pinned kustomize, every object strictly decoded against the
// Kubernetes API types or validated against its operator's CRD, every
// generated Envoy config accepted by Envoy; and a mutated manifest refused.

type K8sObject = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string> }; spec?: any; data?: Record<string, string> };

const dir = mkdtempSync(join(tmpdir(), "taskmesh-test-k8s-"));
let kustomize: string;
let checker: string;
let crds: string;
const built: Record<string, string> = {};

function build(overlay: string): string {
  return execFileSync(kustomize, ["build", join(ROOT, "deploy/k8s", overlay)], { encoding: "utf8", maxBuffer: 64 * 1024 * 1024 });
}

function check(yaml: string): { status: number | null; out: string } {
  const file = join(dir, `check-${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(file, yaml);
  const r = spawnSync(checker, ["k8s", "-crds", crds, file], { encoding: "utf8" });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

function objects(yaml: string): K8sObject[] {
  return parseAllDocuments(yaml).map((d) => d.toJS() as K8sObject).filter(Boolean);
}

function find(list: K8sObject[], kind: string, name: string): K8sObject {
  const found = list.find((o) => o.kind === kind && o.metadata.name === name);
  if (!found) throw new Error(`no ${kind} ${name}`);
  return found;
}

beforeAll(async () => {
  // Pinned tools into the cache: minutes on a new machine (Go builds, Maven), nothing afterwards.
  kustomize = ensureKustomize();
  checker = ensureChecker();
  crds = ensureCrds();
  await ensureEnvoy();
  for (const overlay of ["base", "overlays/dev", "overlays/prod"]) built[overlay] = build(overlay);
}, 900_000);

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("deploy/k8s", () => {
  it("the generated files are what deploy/generate.ts writes from the topology (npm run deploy:generate)", () => {
    expect(staleDeploymentFiles()).toEqual([]);
  });

  it.each(["base", "overlays/dev", "overlays/prod"])("%s: every object passes strict decoding or its CRD's schema", (overlay) => {
    const { status, out } = check(built[overlay]!);
    expect(out).toBe("");
    expect(status).toBe(0);
    expect(objects(built[overlay]!).length).toBeGreaterThan(60);
  });

  it("refuses an unknown field in a Deployment, a wrong type in a Strimzi resource, a broken CEL rule of KEDA and an unknown kind", () => {
    const list = objects(built["overlays/prod"]!);
    find(list, "Deployment", "coordinator").spec.template.spec.containers[0].livenesProbe = { grpc: { port: 7002 } };
    find(list, "KafkaNodePool", "dual-role").spec.replicas = "three";
    find(list, "Cluster", "taskmesh-pg").spec.instancez = 3;
    const scaled = find(list, "ScaledObject", "worker");
    scaled.spec.minReplicaCount = 10;
    scaled.spec.maxReplicaCount = 2;
    list.push({ apiVersion: "example.com/v1", kind: "Widget", metadata: { name: "w" } });
    const { status, out } = check(list.map((o) => JSON.stringify(o)).join("\n---\n"));
    expect(status).toBe(1);
    expect(out).toContain('Deployment taskmesh/coordinator: strict decoding error: unknown field "spec.template.spec.containers[0].livenesProbe"');
    expect(out).toMatch(/KafkaNodePool taskmesh\/dual-role: spec\.replicas: Invalid value: "string"/);
    expect(out).toContain('Cluster taskmesh/taskmesh-pg: unknown field "spec.instancez"');
    expect(out).toContain("ScaledObject taskmesh/worker: spec: Invalid value");
    expect(out).toContain("minReplicaCount must be less than or equal to maxReplicaCount");
    expect(out).toContain("no schema for example.com/v1, Kind=Widget");
  });

  it("admits to each service's mTLS port only the callers topology.yaml names, and everything to the edge", () => {
    const t = loadTopology();
    const list = objects(built.base!);
    for (const [service, spec] of Object.entries(t.services)) {
      const ingress = find(list, "NetworkPolicy", service).spec.ingress as any[];
      const mesh = ingress.filter((rule) => rule.ports?.some((p: any) => p.port === PORTS.inbound));
      if (spec.callers.length === 0) {
        expect(mesh).toEqual([]);
        continue;
      }
      expect(mesh).toHaveLength(1);
      expect(mesh[0].from[0].podSelector.matchExpressions[0].values).toEqual(spec.callers);
    }
    const edge = find(list, "NetworkPolicy", "edge").spec.ingress as any[];
    expect(edge).toContainEqual({ ports: [{ port: PORTS.edge, protocol: "TCP" }] });
    expect(find(list, "NetworkPolicy", "mesh-default-deny").spec).toEqual({ podSelector: { matchLabels: { "taskmesh.dev/mesh": "true" } }, policyTypes: ["Ingress"] });
  });

  it("runs each app behind its Envoy sidecar with gRPC probes through the sidecar's probe port, and a PodDisruptionBudget", () => {
    const t = loadTopology();
    const list = objects(built.base!);
    for (const service of Object.keys(t.services)) {
      const pod = find(list, "Deployment", service).spec.template.spec;
      expect(pod.initContainers[0]).toMatchObject({ name: "envoy", restartPolicy: "Always" });
      const app = pod.containers[0];
      expect(app.readinessProbe.grpc.port).toBe(PORTS.probe);
      expect(app.startupProbe.grpc.port).toBe(PORTS.probe);
      expect(app.resources.requests).toHaveProperty("cpu");
      expect(app.env).toContainEqual({ name: "TASKMESH_LISTEN", value: `127.0.0.1:${PORTS.app}` });
      expect(find(list, "PodDisruptionBudget", service).spec.maxUnavailable).toBe(1);
      expect(find(list, "Certificate", `${service}-mesh`).spec.uris).toEqual([`spiffe://${t.trustDomain}/${service}`]);
    }
  });

  it("keeps the stateful parts highly available in prod: 3 Postgres instances, 3 KRaft nodes with RF 3 and min ISR 2, Redis with Sentinel", () => {
    const list = objects(built["overlays/prod"]!);
    expect(find(list, "Cluster", "taskmesh-pg").spec.instances).toBe(3);
    const pool = find(list, "KafkaNodePool", "dual-role").spec;
    expect(pool.replicas).toBe(3);
    expect(pool.roles).toEqual(["controller", "broker"]);
    const kafka = find(list, "Kafka", "taskmesh-kafka").spec.kafka.config;
    expect(kafka).toMatchObject({ "default.replication.factor": 3, "min.insync.replicas": 2 });
    for (const topic of list.filter((o) => o.kind === "KafkaTopic")) expect(topic.spec).toMatchObject({ replicas: 3, config: { "min.insync.replicas": 2 } });
    expect(find(list, "RedisFailover", "taskmesh-redis").spec).toMatchObject({ redis: { replicas: 3 }, sentinel: { replicas: 3 } });
  });

  it("scales workers with KEDA on the metric the ledger exports, and the coordinator with an HPA", () => {
    const list = objects(built["overlays/prod"]!);
    const scaled = find(list, "ScaledObject", "worker").spec;
    expect(scaled).toMatchObject({ minReplicaCount: 4, maxReplicaCount: 100, cooldownPeriod: 300, scaleTargetRef: { name: "worker" } });
    expect(scaled.triggers[0]).toMatchObject({ type: "prometheus", metadata: { threshold: "8" } });
    const metric = /taskmesh_queue_depth/.exec(scaled.triggers[0].metadata.query)?.[0];
    expect(metric).toBe("taskmesh_queue_depth");
    expect(readFileSync(join(ROOT, "services/ledger/src/metrics.ts"), "utf8")).toContain(`name: "${metric}"`);
    expect(find(list, "HorizontalPodAutoscaler", "coordinator").spec).toMatchObject({ minReplicas: 3, maxReplicas: 10, scaleTargetRef: { name: "coordinator" } });
  });

  it("samples 5% of requests in prod: the edge's config and the services' sampler agree", () => {
    const list = objects(built["overlays/prod"]!);
    const edgeConfig = list.find((o) => o.kind === "ConfigMap" && o.metadata.name.startsWith("edge-envoy-"))!.data!["envoy.yaml"]!;
    expect(edgeConfig).toContain(`value: ${PROD_TRACE_PERCENT}\n`);
    expect(find(list, "Deployment", "ledger").spec.template.spec.containers[0].env).toContainEqual({ name: "OTEL_TRACES_SAMPLER_ARG", value: String(PROD_TRACE_PERCENT / 100) });
  });

  it("every generated Envoy config passes envoy --mode validate", async () => {
    // The configs name /etc/taskmesh; here it is a folder with test certificates laid out as the pods mount them.
    const meshDir = join(dir, "etc-taskmesh");
    makeTestCerts(join(meshDir, "certs"), "edge");
    cpSync(join(ROOT, "deploy/k8s/base/generated/envoy/sds-ca.yaml"), join(meshDir, "certs/sds-ca.yaml"));
    cpSync(join(ROOT, "deploy/k8s/base/generated/envoy/sds-cert.yaml"), join(meshDir, "certs/sds-cert.yaml"));
    for (const file of ["sds-ca.yaml", "sds-cert.yaml"]) {
      const path = join(meshDir, "certs", file);
      writeFileSync(path, readFileSync(path, "utf8").replaceAll("/etc/taskmesh/", `${meshDir}/`));
    }
    mkdirSync(join(meshDir, "assets"), { recursive: true });
    const envoyDir = join(ROOT, "deploy/k8s/base/generated/envoy");
    const configs = [...readdirSync(envoyDir).filter((f) => !f.startsWith("sds-")).map((f) => join(envoyDir, f)), join(ROOT, "deploy/k8s/overlays/prod/generated/edge-envoy.yaml")];
    const failures: string[] = [];
    for (const config of configs) {
      const text = readFileSync(config, "utf8").replaceAll("/etc/taskmesh/", `${meshDir}/`);
      // The edge's static files are read at load: stand-ins of the same names.
      for (const m of text.matchAll(new RegExp(`filename: (${meshDir}/assets/[^\\n]+)`, "g"))) {
        mkdirSync(join(m[1]!, ".."), { recursive: true });
        writeFileSync(m[1]!, "stand-in\n");
      }
      const descriptor = join(meshDir, "assets/descriptor.binpb");
      cpSync(join(ROOT, "packages/contracts/gen/descriptor.binpb"), descriptor);
      const file = join(dir, `validate-${configs.indexOf(config)}.yaml`);
      writeFileSync(file, text);
      await envoyValidate(file).catch((error: Error) => failures.push(`${config}: ${error.message}`));
    }
    expect(failures).toEqual([]);
  }, 180_000);
});
