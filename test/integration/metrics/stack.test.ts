import { describe, expect, inject, it } from "vitest";
import { TaskServiceService } from "@taskmesh/contracts/gen/taskmesh/coordinator/v1/task_service";
import { TaskState } from "@taskmesh/contracts/gen/taskmesh/task/v1/task";
import { freePort } from "@taskmesh/local/secrets";
import { createClient } from "@taskmesh/kit";
import { createTestDatabase } from "../../support/postgres.js";
import { startService, waitForServing, type ServiceProcess } from "../../support/processes.js";
import { submitRequest, until } from "../coordinator/stack.js";
import { sampleOf, scrape } from "./prometheus-text.js";

/** Starts a service on free app and metrics ports; resolves once it is SERVING. */
async function start(name: string, env: Record<string, string>) {
  const address = `127.0.0.1:${await freePort()}`;
  const metrics = `http://127.0.0.1:${await freePort()}/metrics`;
  const proc = startService(name, { ...env, TASKMESH_LISTEN: address, TASKMESH_METRICS_LISTEN: metrics.slice(7, -8) });
  await waitForServing(address, proc);
  return { proc, address, metrics };
}

async function stop(p: ServiceProcess): Promise<void> {
  if (p.child.exitCode !== null) return;
  p.child.kill("SIGTERM");
  await p.exited;
}

describe("coordinator and worker /metrics", () => {
  it("report the connected worker, its slots, the dispatches and the executions by outcome", async () => {
    const db = await createTestDatabase("metrics_stack");
    const procs: ServiceProcess[] = [];
    try {
      const ledger = await start("ledger", { DATABASE_URL: db.url });
      procs.push(ledger.proc);
      const coordinator = await start("coordinator", {
        DATABASE_URL: db.url, REDIS_URL: inject("redisUrl"), TASKMESH_UPSTREAM_LEDGER: ledger.address, TASKMESH_COORDINATOR_POLL: "200ms", TASKMESH_COORDINATOR_STRATEGY: "round_robin",
      });
      procs.push(coordinator.proc);
      const worker = await start("worker", { TASKMESH_UPSTREAM_COORDINATOR: coordinator.address, TASKMESH_WORKER_ID: "metrics-w1", TASKMESH_WORKER_CONCURRENCY: "4" });
      procs.push(worker.proc);
      const tasks = createClient(TaskServiceService, coordinator.address);
      try {
        const ids: string[] = [];
        for (const capability of ["echo", "echo", "fail"]) ids.push((await tasks.submitTask(submitRequest({ capability, input: {}, maxAttempts: 1 }))).task!.id);
        await until("the three tasks to end", async () => {
          const states = await Promise.all(ids.map(async (id) => (await tasks.getTask({ id, view: 1 })).task!.state));
          return states.every((s) => s === TaskState.TASK_STATE_SUCCEEDED || s === TaskState.TASK_STATE_FAILED);
        });
      } finally {
        tasks.close();
      }
      const c = await scrape(coordinator.metrics);
      expect(sampleOf(c, "taskmesh_workers_connected", {})).toBe(1);
      expect(sampleOf(c, "taskmesh_worker_slots", { state: "free" })).toBe(4);
      expect(sampleOf(c, "taskmesh_worker_slots", { state: "busy" })).toBe(0);
      expect(sampleOf(c, "taskmesh_dispatches_total", { strategy: "round_robin" })).toBe(3);
      expect(sampleOf(c, "taskmesh_dispatch_strategy", { strategy: "round_robin" })).toBe(1);
      expect(sampleOf(c, "rpc_server_requests_total", { service: "taskmesh.coordinator.v1.TaskService", method: "SubmitTask", code: "OK" })).toBe(3);
      const w = await scrape(worker.metrics);
      expect(sampleOf(w, "taskmesh_worker_executions_total", { capability: "echo", outcome: "succeeded" })).toBe(2);
      expect(sampleOf(w, "taskmesh_worker_executions_total", { capability: "fail", outcome: "failed" })).toBe(1);
      expect(sampleOf(w, "taskmesh_worker_execution_duration_seconds_count", { capability: "echo", outcome: "succeeded" })).toBe(2);
      expect(sampleOf(w, "taskmesh_worker_tasks_in_flight", {})).toBe(0);
    } finally {
      for (const p of procs.reverse()) await stop(p);
      await db.drop();
    }
  }, 60_000);
});
