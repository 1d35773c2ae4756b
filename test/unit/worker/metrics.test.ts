import { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { createLogger } from "@taskmesh/kit";
import { AgentError, defineAgent, type AgentContext } from "@taskmesh/worker/service";
import { WorkerMetrics } from "../../../services/worker/src/metrics.js";

const log = createLogger({ level: "silent" });
const none = (): never => { throw new Error("no children here"); };
const ctx = (signal: AbortSignal): AgentContext => ({ signal, attempt: 1, taskId: "t", log, progress: () => undefined, spawn: none, all: none, any: none });

async function value(registry: Registry, name: string, labels: Record<string, string>): Promise<number | undefined> {
  const family = (await registry.getMetricsAsJSON()).find((m) => m.name === name.replace(/_count$/, ""));
  const values = family?.values as Array<{ metricName?: string; labels: Record<string, unknown>; value: number }> | undefined;
  return values?.find((v) => (v.metricName ?? family!.name) === name && Object.entries(labels).every(([k, w]) => String(v.labels[k]) === w))?.value;
}

describe("WorkerMetrics", () => {
  it("counts and times executions by capability and outcome, and reports the handlers running", async () => {
    const registry = new Registry();
    let running = 3;
    const metrics = new WorkerMetrics(() => running, registry);
    const echo = metrics.instrument(defineAgent({ capability: "echo", handler: (input) => input }));
    const fail = metrics.instrument(defineAgent({ capability: "fail", handler: () => { throw new AgentError("no"); } }));
    const sleep = metrics.instrument(defineAgent({
      capability: "sleep",
      handler: (_input, c) => new Promise((_, reject) => c.signal.addEventListener("abort", () => reject(c.signal.reason))),
    }));
    await echo.handler({ a: 1 }, ctx(new AbortController().signal));
    await echo.handler({ a: 2 }, ctx(new AbortController().signal));
    await expect(fail.handler({}, ctx(new AbortController().signal))).rejects.toThrow("no");
    const timeout = new AbortController();
    const timing = sleep.handler({}, ctx(timeout.signal));
    timeout.abort(new AgentError("the attempt's deadline passed", { reason: "BIZ_ATTEMPT_TIMED_OUT" }));
    await expect(timing).rejects.toThrow();
    const cancel = new AbortController();
    const cancelled = sleep.handler({}, ctx(cancel.signal));
    cancel.abort(new Error("cancelled"));
    await expect(cancelled).rejects.toThrow();

    expect(await value(registry, "taskmesh_worker_executions_total", { capability: "echo", outcome: "succeeded" })).toBe(2);
    expect(await value(registry, "taskmesh_worker_executions_total", { capability: "fail", outcome: "failed" })).toBe(1);
    expect(await value(registry, "taskmesh_worker_executions_total", { capability: "sleep", outcome: "timed_out" })).toBe(1);
    expect(await value(registry, "taskmesh_worker_executions_total", { capability: "sleep", outcome: "stopped" })).toBe(1);
    expect(await value(registry, "taskmesh_worker_execution_duration_seconds_count", { capability: "echo", outcome: "succeeded" })).toBe(2);
    expect(await value(registry, "taskmesh_worker_tasks_in_flight", {})).toBe(3);
    running = 0;
    expect(await value(registry, "taskmesh_worker_tasks_in_flight", {})).toBe(0);
  });
});
