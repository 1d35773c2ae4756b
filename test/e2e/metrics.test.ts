import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { uuidv7 } from "@taskmesh/kit";
import { sampleOf, scrape } from "../integration/metrics/prometheus-text.js";
import { startUp, type UpRun } from "../support/up.js";

const run = promisify(execFile);

interface Status {
  processes: Array<{ name: string; kind: string; service?: string; state: string; ports: Record<string, number> }>;
}

// The whole system as `taskmesh up -d` runs it (debug logs, so a failed call's line is written),
// on its own state dir and ports: every service instance is scraped on the port status names.
describe("metrics and logs under up", { timeout: 90_000 }, () => {
  let upRun: UpRun;

  const status = async (): Promise<Status> => JSON.parse((await upRun.taskmesh("status", "--json")).stdout) as Status;

  beforeAll(async () => {
    upRun = await startUp([], { LOG_LEVEL: "debug" });
  }, 400_000); // waiting for the lock included

  afterAll(async () => {
    await upRun?.down();
  }, 60_000);

  it("every service instance serves /metrics on its ports.metrics, with process and RPC series; the Envoys at /stats/prometheus", async () => {
    const { processes } = await status();
    const services = processes.filter((p) => p.kind === "service");
    expect(services.length).toBeGreaterThan(0);
    for (const p of services) {
      expect(p.ports.metrics, p.name).toBeGreaterThan(0);
      const text = await scrape(`http://127.0.0.1:${p.ports.metrics}/metrics`);
      expect(sampleOf(text, "process_resident_memory_bytes", {}), p.name).toBeGreaterThan(0);
      // Each sidecar's active health check has called the app by now.
      expect(text, p.name).toMatch(/^rpc_server_requests_total\{service="grpc\.health\.v1\.Health",method="Check",code="OK"\} [1-9]/m);
    }
    const ledger = await scrape(`http://127.0.0.1:${services.find((p) => p.service === "ledger")!.ports.metrics}/metrics`);
    expect(sampleOf(ledger, "taskmesh_outbox_lag", {})).toBeGreaterThanOrEqual(0);
    const coordinator = await scrape(`http://127.0.0.1:${services.find((p) => p.service === "coordinator")!.ports.metrics}/metrics`);
    expect(sampleOf(coordinator, "taskmesh_workers_connected", {})).toBe(services.filter((p) => p.service === "worker").length);
    const edge = await (await fetch(`http://127.0.0.1:${upRun.env.TASKMESH_EDGE_ADMIN_PORT}/stats/prometheus`)).text();
    expect(edge).toMatch(/^envoy_/m);
  });

  it("logs --trace prints the lines of one trace from every process it touched, and only those", async () => {
    const trace = "5bf92f3577b34da6a3ce929d0e0e4736";
    const coordinator = (await status()).processes.find((p) => p.name === "coordinator-0")!;
    // A call for a task that does not exist: the coordinator asks the ledger, and both log the NOT_FOUND at debug.
    const got = await run("grpcurl", [
      "-plaintext", "-H", `traceparent: 00-${trace}-00f067aa0ba902b7-01`, "-d", JSON.stringify({ id: uuidv7() }),
      `127.0.0.1:${coordinator.ports.app}`, "taskmesh.coordinator.v1.TaskService/GetTask",
    ], { timeout: 10_000 }).then(() => "found", (e: { stderr: string }) => e.stderr);
    expect(got).toMatch(/NotFound/);
    await new Promise((r) => setTimeout(r, 500));
    const out = await upRun.taskmesh("logs", "--trace", trace);
    expect(out.code, out.stderr).toBe(0);
    const lines = out.stdout.trim().split("\n");
    const processes = new Set(lines.map((l) => l.slice(0, l.indexOf(" |"))));
    expect(processes.has("coordinator-0"), out.stdout).toBe(true);
    expect(processes.has("ledger-0"), out.stdout).toBe(true);
    for (const line of lines.filter((l) => l.includes("| {"))) {
      expect((JSON.parse(line.slice(line.indexOf("| {") + 2)) as { trace_id?: string }).trace_id).toBe(trace);
    }
    const one = await upRun.taskmesh("logs", "ledger-0", "--trace", trace);
    expect(one.stdout.trim().split("\n").every((l) => l.includes(trace))).toBe(true);
  });
});
