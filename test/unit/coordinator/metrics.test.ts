import { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import type { Dispatcher, LedgerClient } from "../../../services/coordinator/src/dispatcher.js";
import { countDispatches, registerCoordinatorMetrics } from "../../../services/coordinator/src/metrics.js";
import type { StrategyName } from "../../../services/coordinator/src/strategies.js";
import { WorkerSession } from "../../../services/coordinator/src/worker-session.js";
import type { WorkerInfo } from "@taskmesh/contracts/gen/taskmesh/worker/v1/worker";

async function value(registry: Registry, name: string, labels: Record<string, string> = {}): Promise<number | undefined> {
  const family = (await registry.getMetricsAsJSON()).find((m) => m.name === name);
  const values = family?.values as Array<{ labels: Record<string, unknown>; value: number }> | undefined;
  return values?.find((v) => Object.entries(labels).every(([k, w]) => String(v.labels[k]) === w))?.value;
}

/** A worker stream as the dispatcher holds it: its slots and the tasks it holds. */
const session = (maxConcurrency: number, held: number, draining = false): WorkerSession => {
  const s = new WorkerSession({ workerId: "w", maxConcurrency, capabilities: [{ name: "echo", maxConcurrency: 0 }] } as unknown as WorkerInfo, "s", async () => undefined, () => undefined);
  for (let i = 0; i < held; i++) s.hold({ taskId: `t${i}`, leaseId: `l${i}`, attempt: 1, capability: "echo", assignedAt: 0 });
  if (draining) s.drain();
  return s;
};

describe("coordinator metrics", () => {
  it("reports connected workers, busy and free slots, utilization and the strategy in use", async () => {
    const registry = new Registry();
    const sessions = new Map([["w1", session(4, 1)], ["w2", session(4, 3)], ["w3", session(2, 2, true)]]);
    registerCoordinatorMetrics({ sessions, strategy: "least_loaded" } as unknown as Dispatcher, registry);
    expect(await value(registry, "taskmesh_workers_connected")).toBe(3);
    expect(await value(registry, "taskmesh_worker_slots", { state: "busy" })).toBe(6);
    expect(await value(registry, "taskmesh_worker_slots", { state: "free" })).toBe(4);
    expect(await value(registry, "taskmesh_worker_slot_utilization")).toBeCloseTo(0.6);
    expect(await value(registry, "taskmesh_dispatch_strategy", { strategy: "least_loaded" })).toBe(1);
    expect(await value(registry, "taskmesh_dispatch_strategy", { strategy: "random" })).toBe(0);
  });

  it("counts assigned tasks under the strategy in use when they were assigned", async () => {
    const registry = new Registry();
    let strategy: StrategyName = "round_robin";
    const ledger = { assignTasks: async (req: { workerIds: string[] }) => ({ tasks: req.workerIds.map((id) => ({ id })) }) } as unknown as LedgerClient;
    const counted = countDispatches(ledger, () => strategy, registry);
    await counted.assignTasks({ capability: "echo", workerIds: ["a", "b"], leaseDuration: undefined });
    strategy = "latency";
    await counted.assignTasks({ capability: "echo", workerIds: ["a"], leaseDuration: undefined });
    expect(await value(registry, "taskmesh_dispatches_total", { strategy: "round_robin" })).toBe(2);
    expect(await value(registry, "taskmesh_dispatches_total", { strategy: "latency" })).toBe(1);
    expect(await value(registry, "taskmesh_dispatches_total", { strategy: "random" })).toBe(0);
  });

  it("counts the tasks a create leased to a worker (sync match), and no other created or deduplicated task", async () => {
    const registry = new Registry();
    const answer = (created: boolean, leased: boolean) => ({ result: { $case: "response", value: { created, task: { id: "t", ...(leased ? { lease: { workerId: "w" } } : {}) } } } });
    const ledger = {
      createTasks: async () => ({ results: [answer(true, true), answer(true, false), answer(false, true), { result: { $case: "error", value: { code: 3 } } }, answer(true, true)] }),
    } as unknown as LedgerClient;
    const counted = countDispatches(ledger, () => "least_loaded", registry);
    await counted.createTasks({ tasks: [] });
    expect(await value(registry, "taskmesh_dispatches_total", { strategy: "least_loaded" })).toBe(2);
  });
});
