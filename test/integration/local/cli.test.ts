import { execFile } from "node:child_process";
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { exclusive, supervisorLogTail } from "../../support/exclusive.js";
import { Kafka, logLevel } from "kafkajs";
import { KAFKA_TOPICS } from "@taskmesh/local/provision/kafka";
import { pingRedis } from "@taskmesh/local/provision/redis";
import { alive } from "@taskmesh/local/supervisor";
import { freePort } from "@taskmesh/local/secrets";
import { ROOT } from "../../support/processes.js";

const run = promisify(execFile);

interface Status {
  supervisorPid?: number;
  phase?: string;
  processes: Array<{ name: string; kind: string; service?: string; pid?: number; state: string; ports: Record<string, number> }>;
}

describe("npx taskmesh up -d / status / health / config / down, on its own state dir and ports", { timeout: 120_000 }, () => {
  let stateDir: string;
  let env: NodeJS.ProcessEnv;

  /** Runs the CLI as a user would (`npx taskmesh …` runs scripts/taskmesh.mjs). */
  const taskmesh = async (...args: string[]): Promise<{ stdout: string; stderr: string; code: number }> => {
    try {
      const { stdout, stderr } = await run(process.execPath, [join(ROOT, "scripts/taskmesh.mjs"), ...args], { env, timeout: 90_000 });
      return { stdout, stderr, code: 0 };
    } catch (error) {
      const e = error as { stdout?: string; stderr?: string; code?: number };
      return { stdout: e.stdout ?? "", stderr: e.stderr ?? "", code: e.code ?? -1 };
    }
  };
  const status = async (): Promise<Status> => JSON.parse((await taskmesh("status", "--json")).stdout) as Status;

  let release: (() => void) | undefined;

  beforeAll(async () => {
    // One whole system at a time on this machine (see exclusive()).
    release = await exclusive("up");
    stateDir = mkdtempSync(join(tmpdir(), "taskmesh-cli-"));
    chmodSync(stateDir, 0o755); // Postgres (as user postgres when root) must reach its data directory below
    const { DATABASE_URL: _ignored, ...rest } = process.env;
    env = { ...rest, TASKMESH_STATE_DIR: stateDir, NO_COLOR: "1" };
    for (const variable of ["POSTGRES", "REDIS", "KAFKA", "JAEGER", "OTLP_GRPC", "OTLP_HTTP", "JAEGER_GRPC", "EDGE", "EDGE_ADMIN"]) {
      env[`TASKMESH_${variable}_PORT`] = String(await freePort());
    }
  }, 400_000); // waiting for the lock included

  afterAll(async () => {
    try {
      await taskmesh("down");
      rmSync(stateDir, { recursive: true, force: true });
    } finally {
      release?.();
    }
  });

  it("starts everything in the background and returns once it is healthy", async () => {
    const upResult = await taskmesh("up", "-d", "--replicas", "config=2");
    expect(upResult.code, upResult.stderr + upResult.stdout + supervisorLogTail(stateDir)).toBe(0);
    const s = await status();
    expect(s.phase).toBe("ready");
    // Sidecars in deploy/topology.yaml's order of services.
    const instances = ["config-0", "config-1", "ledger-0", "coordinator-0", "identity-0", "ratelimit-0", "events-0", "worker-0", "worker-1"];
    // In dependency order: the edge waits for identity, whose keys it checks tokens with.
    const started = ["config-0", "config-1", "ledger-0", "identity-0", "edge", "coordinator-0", "ratelimit-0", "events-0", "worker-0", "worker-1"];
    expect(s.processes.map((p) => [p.name, p.kind, p.state])).toEqual([
      ["postgres", "infra", "running"], ["redis", "infra", "running"], ["kafka", "infra", "running"], ["jaeger", "infra", "running"],
      ...instances.map((i) => [`${i}-sidecar`, "sidecar", "running"]),
      ...started.map((i) => [i, i === "edge" ? "edge" : "service", "running"]),
    ]);
    // Each sidecar shows its admin, inbound and outbound ports; the edge its own.
    const sidecar = s.processes.find((p) => p.name === "coordinator-0-sidecar")!;
    expect(Object.keys(sidecar.ports).sort()).toEqual(["admin", "inbound", "outbound"]);
    expect(s.processes.find((p) => p.name === "edge")!.ports).toEqual({ http: Number(env.TASKMESH_EDGE_PORT), admin: Number(env.TASKMESH_EDGE_ADMIN_PORT) });
    const ports = Object.fromEntries(s.processes.map((p) => [p.name, p.ports]));
    expect(ports.postgres!.app).toBe(Number(env.TASKMESH_POSTGRES_PORT));
    // Each answers on its port, as a user's client would see it.
    expect(await pingRedis(ports.redis!.app!)).toBe(true);
    const kafka = new Kafka({ brokers: [`127.0.0.1:${ports.kafka!.app}`], logLevel: logLevel.NOTHING }).admin();
    await kafka.connect();
    try {
      expect(await kafka.listTopics()).toEqual(expect.arrayContaining(Object.keys(KAFKA_TOPICS)));
    } finally {
      await kafka.disconnect();
    }
    expect((await fetch(`http://127.0.0.1:${ports.jaeger!.ui}/api/services`)).status).toBe(200);
    const { stdout: services } = await run("grpcurl", ["-plaintext", `127.0.0.1:${ports["config-0"]!.app}`, "list"]);
    expect(services).toContain("taskmesh.config.v1.ConfigService");
    const healthResult = await taskmesh("health", "--json");
    expect(healthResult.code).toBe(0);
    expect(JSON.parse(healthResult.stdout)).toEqual(started.filter((name) => name !== "edge").map((name) => expect.objectContaining({ name, status: "SERVING" })));
  });

  it("runs a task end to end: submit --wait, get, list, watch and cancel through the coordinator", async () => {
    const submitted = await taskmesh("task", "submit", "echo", '{"text":"from the cli"}', "--wait", "--json");
    expect(submitted.code, submitted.stderr).toBe(0);
    const lines = submitted.stdout.trim().split("\n");
    const { task: final } = JSON.parse(lines.at(-1)!) as { task: { id: string; state: string; output: unknown; workerId: string } };
    expect(final).toMatchObject({ state: "TASK_STATE_SUCCEEDED", output: { text: "from the cli" } });
    expect(["worker-0", "worker-1"]).toContain(final.workerId);
    const get = await taskmesh("task", "get", final.id);
    expect(get.stdout).toMatch(/SUCCEEDED/);
    expect(get.stdout).toContain(final.id);
    const list = await taskmesh("task", "list", "--state", "succeeded", "--json");
    expect((JSON.parse(list.stdout) as { tasks: Array<{ id: string }> }).tasks.map((t) => t.id)).toContain(final.id);
    const long = await taskmesh("task", "submit", "sleep", '{"ms":60000}', "--json");
    const { id } = (JSON.parse(long.stdout) as { task: { id: string } }).task;
    const cancelled = await taskmesh("task", "cancel", id, "--reason", "test");
    expect(cancelled.code, cancelled.stderr).toBe(0);
    const watch = await taskmesh("task", "watch", id);
    expect(watch.code).toBe(1);
    expect(watch.stdout).toMatch(/CANCELLED/);
    // Through the edge Envoy and the sidecars, as grpcurl and HTTP/JSON users reach it.
    const edge = `127.0.0.1:${env.TASKMESH_EDGE_PORT}`;
    const token = await taskmesh("token");
    expect(token.code, token.stderr).toBe(0);
    const authorization = `Bearer ${token.stdout.trim()}`;
    const { stdout: listed } = await run("grpcurl", ["-plaintext", edge, "list"]);
    expect(listed).toContain("taskmesh.coordinator.v1.TaskService");
    const { stdout: viaEdge } = await run("grpcurl", ["-plaintext", "-H", `authorization: ${authorization}`, "-d", JSON.stringify({ id: final.id }), edge, "taskmesh.coordinator.v1.TaskService/GetTask"]);
    expect(JSON.parse(viaEdge)).toMatchObject({ task: { id: final.id, state: "TASK_STATE_SUCCEEDED" } });
    const http = await fetch(`http://${edge}/v1/tasks`, { method: "POST", headers: { "content-type": "application/json", authorization }, body: JSON.stringify({ capability: "echo", input: { via: "http" } }) });
    expect(http.status).toBe(200);
    const created = (await http.json()) as { task: { id: string } };
    const fetched = await fetch(`http://${edge}/v1/tasks/${created.task.id}`, { headers: { authorization } });
    expect(((await fetched.json()) as { task: { input: unknown } }).task.input).toEqual({ via: "http" });
    const bad = await taskmesh("task", "submit", "teleport");
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/INVALID_ARGUMENT \(VAL_UNKNOWN_CAPABILITY\)/);
  });

  it("shows each process's log, and names the processes when asked for an unknown one", async () => {
    const log = await taskmesh("logs", "config-1");
    expect(log.code).toBe(0);
    expect(log.stdout).toMatch(/"msg":"serving"/);
    const unknown = await taskmesh("logs", "nope");
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/no log for nope \(processes: postgres, redis, kafka, jaeger, config-0-sidecar, .*, config-0, config-1, ledger-0, identity-0, edge, coordinator-0, ratelimit-0, events-0, worker-0, worker-1/);
    const badReplicas = await taskmesh("up", "--replicas", "config=zero");
    expect(badReplicas.code).not.toBe(0);
    expect(badReplicas.stderr).toMatch(/--replicas: expected name=N/);
  });

  it("refuses a second up while one runs", async () => {
    const again = await taskmesh("up", "-d");
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/already running/);
  });

  it("writes and reads config through the running service; bad input shows the error details", async () => {
    expect((await taskmesh("config", "put", "/coordinator/dispatch/strategy", "least_loaded")).code).toBe(0);
    const get = await taskmesh("config", "get", "coordinator/dispatch/strategy", "--json");
    expect(JSON.parse(get.stdout)).toMatchObject({ key: "/coordinator/dispatch/strategy", value: "least_loaded" });
    const bad = await taskmesh("config", "put", "/bad key", "1");
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/INVALID_ARGUMENT \(VAL_INVALID_KEY\)/);
  });

  it("restarts a service that is killed, and reports it in status", async () => {
    const before = (await status()).processes.find((p) => p.name === "config-1")!;
    process.kill(before.pid!, "SIGKILL");
    const until = Date.now() + 20_000;
    let after = before;
    while (Date.now() < until) {
      after = (await status()).processes.find((p) => p.name === "config-1")!;
      if (after.state === "running" && after.pid !== before.pid) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(after).toMatchObject({ state: "running" });
    expect(after.pid).not.toBe(before.pid);
    expect((await taskmesh("health", "--json")).code).toBe(0);
  });

  it("recovers when its supervisor was killed: the next up cleans up and starts afresh", async () => {
    const old = await status();
    process.kill(old.supervisorPid!, "SIGKILL");
    const until = Date.now() + 5000;
    while (alive(old.supervisorPid!) && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    expect((await taskmesh("status")).stdout).toMatch(/supervisor gone/);
    const upResult = await taskmesh("up", "-d");
    expect(upResult.code, upResult.stderr + upResult.stdout + supervisorLogTail(stateDir)).toBe(0);
    for (const p of old.processes) expect(alive(p.pid!), `${p.name} left running`).toBe(false);
    // The data survived: Postgres restarted on the same directory.
    const get = await taskmesh("config", "get", "/coordinator/dispatch/strategy", "--json");
    expect(JSON.parse(get.stdout)).toMatchObject({ value: "least_loaded" });
  });

  it("down stops everything, leaving no process behind", async () => {
    const s = await status();
    const result = await taskmesh("down");
    expect(result.code).toBe(0);
    for (const p of s.processes) expect(alive(p.pid!), `${p.name} left running`).toBe(false);
    expect(alive(s.supervisorPid!)).toBe(false);
    expect((await status()).processes).toEqual([]);
  });
});
