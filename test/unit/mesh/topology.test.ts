import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { parse, stringify } from "yaml";
import {
  calleesOf, edgeReflection, healthServiceOf, identities, instanceNames, loadTopology, methodPolicy, parseTopology, spiffeId, TOPOLOGY_PATH, TopologyError,
} from "@taskmesh/mesh/topology";
import { inboundRbac, outboundRoutes } from "../../../packages/mesh/src/sidecar.js";
import { edgeRoutes } from "../../../packages/mesh/src/edge.js";

const source = readFileSync(TOPOLOGY_PATH, "utf8");

/** The project's topology with one change applied to its parsed form. */
function withChange(change: (raw: any) => void): string {
  const raw = parse(source);
  change(raw);
  return stringify(raw);
}

function errorOf(text: string): string {
  try {
    parseTopology(text, "t.yaml");
  } catch (error) {
    expect(error).toBeInstanceOf(TopologyError);
    return (error as Error).message;
  }
  throw new Error("expected a TopologyError");
}

describe("deploy/topology.yaml", () => {
  const t = loadTopology();

  it("loads with durations in ms and default replicas", () => {
    expect(t.defaults.timeout).toBe(15_000);
    expect(t.defaults.streamIdleTimeout).toBe(3_600_000);
    expect(Object.fromEntries(Object.entries(t.services).map(([n, s]) => [n, s.replicas]))).toEqual({ config: 1, ledger: 1, coordinator: 1, identity: 1, ratelimit: 1, events: 1, worker: 2 });
    expect(instanceNames(t, { coordinator: 2 }).map((i) => i.name))
      .toEqual(["config-0", "ledger-0", "coordinator-0", "coordinator-1", "identity-0", "ratelimit-0", "events-0", "worker-0", "worker-1"]);
  });

  it("resolves who may call whom", () => {
    expect(calleesOf(t, "coordinator")).toEqual(["config", "ledger"]);
    expect(calleesOf(t, "worker")).toEqual(["coordinator"]);
    expect(calleesOf(t, "edge")).toEqual(["config", "coordinator", "identity", "ratelimit", "events"]);
    expect(calleesOf(t, "ratelimit")).toEqual(["config"]);
    expect(calleesOf(t, "events")).toEqual(["config"]);
    expect(calleesOf(t, "ledger")).toEqual([]);
    expect(calleesOf(t, "config")).toEqual([]);
    expect(identities(t)).toEqual(["config", "ledger", "coordinator", "identity", "ratelimit", "events", "worker", "edge"]);
    expect(spiffeId(t, "worker")).toBe("spiffe://taskmesh.local/worker");
  });

  it("lets only the listed callers in, and every mesh identity only to health", () => {
    const policies = inboundRbac(t, "ledger").rules.policies;
    expect(policies.callers!.principals).toEqual([{ authenticated: { principal_name: { exact: "spiffe://taskmesh.local/coordinator" } } }]);
    expect(policies["mesh-health-checks"]!.permissions).toEqual([{ url_path: { path: { prefix: "/grpc.health.v1.Health/" } } }]);
    expect(inboundRbac(t, "worker").rules.policies.callers).toBeUndefined();
  });

  it("retries only safe methods and gives streams no route timeout", () => {
    expect(methodPolicy(t, "coordinator", "taskmesh.coordinator.v1.TaskService", "GetTask")).toEqual({ retry: true, stream: false, timeoutMs: 15_000 });
    expect(methodPolicy(t, "coordinator", "taskmesh.coordinator.v1.TaskService", "SubmitTask").retry).toBe(false);
    expect(methodPolicy(t, "coordinator", "taskmesh.coordinator.v1.TaskService", "WatchTask")).toEqual({ retry: false, stream: true, timeoutMs: 0 });
    expect(methodPolicy(t, "ledger", "taskmesh.ledger.v1.LedgerService", "CompleteTask").retry).toBe(true);
    expect(methodPolicy(t, "ledger", "taskmesh.ledger.v1.LedgerService", "AssignTasks").retry).toBe(false);
    expect(methodPolicy(t, "config", "taskmesh.config.v1.ConfigService", "Put").retry).toBe(false);

    const routes = outboundRoutes(t, "worker");
    const connect = routes.find((r) => r.match.path === "/taskmesh.coordinator.v1.WorkerService/Connect");
    expect(connect?.route).toMatchObject({ cluster: "coordinator", timeout: "0s", max_stream_duration: { grpc_timeout_header_max: "0s" } });
    expect(connect?.route?.retry_policy).toBeUndefined();
    const ledger = outboundRoutes(t, "coordinator").filter((r) => r.route?.cluster === "ledger");
    expect(ledger.map((r) => r.name)).toEqual(["taskmesh.ledger.v1.LedgerService/ClaimTasks", "taskmesh.ledger.v1.LedgerService/AssignTasks", "taskmesh.ledger.v1.LedgerService"]);
    expect(ledger[2]!.route).toMatchObject({ timeout: "15s", max_stream_duration: { grpc_timeout_header_max: "15s" }, retry_policy: { num_retries: 2 } });
    expect(ledger[0]!.route?.retry_policy).toBeUndefined();
  });

  it("checks the health service each app registers", () => {
    expect(healthServiceOf(t, "ledger")).toBe("taskmesh.ledger.v1.LedgerService");
    expect(healthServiceOf(t, "coordinator")).toBe("taskmesh.coordinator.v1.TaskService");
  });

  it("exposes at the edge only what the topology lists (the ledger and ratelimit stay inside), and limits token issue per address", () => {
    const paths = edgeRoutes(t).map((r) => r.match.path ?? r.match.prefix);
    expect(paths).toContain("/taskmesh.config.v1.ConfigService/");
    expect(paths).toContain("/taskmesh.identity.v1.IdentityService/");
    expect(paths).toContain("/taskmesh.events.v1.EventService/");
    expect(paths.some((p) => p?.startsWith("/taskmesh.ledger.") || p?.startsWith("/envoy.service.ratelimit."))).toBe(false);
    expect(paths).toContain("/taskmesh.coordinator.v1.TaskService/");
    expect(paths).toContain("/taskmesh.coordinator.v1.ClusterService/");
    const limited = edgeRoutes(t, true).filter((r) => r.route?.rate_limits).map((r) => r.match.path);
    expect(limited).toEqual(["/taskmesh.identity.v1.IdentityService/IssueToken", "/taskmesh.identity.v1.IdentityService/RefreshToken"]);
    expect(paths).toContain("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo");
    expect(paths.at(-1)).toBe("/");
    const reflection = edgeRoutes(t).find((r) => r.match.path === "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo");
    expect(reflection?.route).toMatchObject({ cluster: "coordinator", timeout: "0s" });
    // The coordinator answers the edge's reflection for every taskmesh service the edge exposes.
    expect(edgeReflection(t)).toEqual({
      target: "coordinator",
      services: ["taskmesh.coordinator.v1.TaskService", "taskmesh.coordinator.v1.ClusterService", "taskmesh.config.v1.ConfigService", "taskmesh.identity.v1.IdentityService", "taskmesh.events.v1.EventService"],
    });
  });
});

describe("validation errors name the bad field", () => {
  it("rejects YAML that does not parse", () => {
    expect(errorOf("services: [")).toMatch(/^t\.yaml: not valid YAML/);
  });

  it("rejects a bad duration, replica count, policy and unknown fields", () => {
    expect(errorOf(withChange((r) => (r.defaults.timeout = "15")))).toMatch(/defaults\.timeout: expected a duration with a unit/);
    expect(errorOf(withChange((r) => (r.services.worker.replicas = -1)))).toMatch(/services\.worker\.replicas:/);
    expect(errorOf(withChange((r) => (r.services.ledger.lbPolicy = "FASTEST")))).toMatch(/services\.ledger\.lbPolicy:/);
    expect(errorOf(withChange((r) => (r.services.ledger.retries = 3)))).toMatch(/services\.ledger: .*retries/);
    expect(errorOf(withChange((r) => (r.services.ledger.grpc["taskmesh.ledger.v1.LedgerService"].methods.getTask = { retry: true }))))
      .toMatch(/services\.ledger\.grpc\.taskmesh\.ledger\.v1\.LedgerService\.methods\.getTask: .*expected a method name/);
  });

  it("rejects unknown callers, self calls, unknown health services and edge targets", () => {
    expect(errorOf(withChange((r) => r.services.ledger.callers.push("billing")))).toMatch(/services\.ledger\.callers\.1: unknown caller "billing"/);
    expect(errorOf(withChange((r) => r.services.ledger.callers.push("ledger")))).toMatch(/services\.ledger\.callers\.1: a service does not call itself/);
    expect(errorOf(withChange((r) => (r.services.config.healthService = "taskmesh.config.v1.Nope")))).toMatch(/services\.config\.healthService:/);
    expect(errorOf(withChange((r) => r.edge.expose.push({ service: "taskmesh.billing.v1.BillingService" })))).toMatch(/edge\.expose\.8\.target: no service serves taskmesh\.billing\.v1\.BillingService/);
    expect(errorOf(withChange((r) => r.edge.expose.push({ service: "taskmesh.ledger.v1.LedgerService" })))).toMatch(/edge\.expose\.8: ledger does not list edge among its callers/);
  });

  it("rejects unknown services in replica overrides", () => {
    expect(() => instanceNames(loadTopology(), { billing: 2 })).toThrow(/replicas: unknown service "billing"/);
  });
});
