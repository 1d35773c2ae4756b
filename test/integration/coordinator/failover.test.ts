import { describe, expect, it } from "vitest";
import { TaskState } from "@taskmesh/contracts/gen/taskmesh/task/v1/task";
import { Code, MeshError } from "@taskmesh/kit";
import { startStack, submitRequest, until } from "./stack.js";

describe("coordinator: nothing lost or duplicated when a process dies", () => {
  it("kill -9 of a worker mid-task: the task completes on another worker, once", async () => {
    const stack = await startStack("coord_kill_worker", { workers: [{ id: "fo-w1", capabilities: ["sleep"] }, { id: "fo-w2", capabilities: ["sleep"] }] });
    try {
      const { task } = await stack.tasks.submitTask(submitRequest({ capability: "sleep", input: { ms: 2500 }, retryPolicy: { maxAttempts: 0, initialBackoff: { seconds: 0n, nanos: 100_000_000 }, maxBackoff: { seconds: 1n, nanos: 0 }, multiplier: 2 } }));
      await until("the sleep to run", async () => (await stack.tasks.getTask({ id: task!.id, view: 0 })).task!.state === TaskState.TASK_STATE_RUNNING);
      const victim = (await stack.tasks.getTask({ id: task!.id, view: 0 })).task!.workerId;
      const survivor = victim === "fo-w1" ? "fo-w2" : "fo-w1";
      stack.workers.get(victim)!.child.kill("SIGKILL");
      const done = await stack.settle(task!.id, 20_000);
      expect(done.state).toBe(TaskState.TASK_STATE_SUCCEEDED);
      expect(done.workerId).toBe(survivor);
      expect(done.attempts).toBe(2);
      const { rows } = await stack.sql.query<{ kind: string; worker_id: string; reason: string }>(
        "SELECT kind, worker_id, coalesce(error->>'reason', '') AS reason FROM ledger.history WHERE task_id = $1 ORDER BY sequence", [task!.id]);
      expect(rows.map((r) => `${r.kind}:${r.worker_id}:${r.reason}`)).toEqual([
        "SUBMITTED::", `STARTED:${victim}:`, `RETRYING:${victim}:SYS_LEASE_EXPIRED`, `STARTED:${survivor}:`, `SUCCEEDED:${survivor}:`,
      ]);
    } finally {
      await stack.stop();
    }
  }, 60_000);

  it("a worker that stops heartbeating (SIGSTOP) loses its task to another; when it wakes, its stale attempt counts for nothing", async () => {
    const stack = await startStack("coord_hung_worker", { workers: [{ id: "hb-w1", capabilities: ["sleep"] }, { id: "hb-w2", capabilities: ["sleep"] }] });
    try {
      const { task } = await stack.tasks.submitTask(submitRequest({ capability: "sleep", input: { ms: 3000 }, retryPolicy: { maxAttempts: 0, initialBackoff: { seconds: 0n, nanos: 100_000_000 }, maxBackoff: { seconds: 1n, nanos: 0 }, multiplier: 2 } }));
      await until("the sleep to run", async () => (await stack.tasks.getTask({ id: task!.id, view: 0 })).task!.state === TaskState.TASK_STATE_RUNNING);
      const hung = (await stack.tasks.getTask({ id: task!.id, view: 0 })).task!.workerId;
      const other = hung === "hb-w1" ? "hb-w2" : "hb-w1";
      stack.workers.get(hung)!.child.kill("SIGSTOP");
      try {
        // Three missed heartbeats end its stream; its lease runs out; the task runs again elsewhere.
        await until("the task to run on the other worker", async () => (await stack.tasks.getTask({ id: task!.id, view: 0 })).task!.workerId === other, 15_000);
      } finally {
        stack.workers.get(hung)!.child.kill("SIGCONT");
      }
      const done = await stack.settle(task!.id, 20_000);
      expect([done.state, done.workerId, done.attempts]).toEqual([TaskState.TASK_STATE_SUCCEEDED, other, 2]);
      // The woken worker's own attempt never counts: one SUCCEEDED, by the other worker.
      await new Promise((r) => setTimeout(r, 3500));
      const { rows } = await stack.sql.query<{ kind: string; worker_id: string }>("SELECT kind, worker_id FROM ledger.history WHERE task_id = $1 AND kind IN ('SUCCEEDED', 'FAILED') ORDER BY sequence", [task!.id]);
      expect(rows).toEqual([{ kind: "SUCCEEDED", worker_id: other }]);
    } finally {
      await stack.stop();
    }
  }, 60_000);

  it("a ledger stalled for longer than three heartbeats ends no worker's session: heartbeats count when they arrive", async () => {
    const stack = await startStack("coord_slow_ledger", { workers: [{ id: "sl-w1", capabilities: ["echo"] }] });
    try {
      const session = async (): Promise<{ session_id: string; state: string }> =>
        (await stack.sql.query("SELECT session_id, state FROM ledger.workers WHERE worker_id = 'sl-w1'")).rows[0];
      const before = await session();
      expect(before.state).toBe("CONNECTED");
      // Heartbeats every 300 ms: the stall is ten of them, and each one waits on the ledger.
      stack.ledger.child.kill("SIGSTOP");
      await new Promise((r) => setTimeout(r, 3000));
      stack.ledger.child.kill("SIGCONT");
      const done = await stack.run({ capability: "echo", input: { text: "after the stall" } });
      expect([done.state, done.attempts]).toEqual([TaskState.TASK_STATE_SUCCEEDED, 1]);
      expect(await session()).toEqual(before);
      expect(stack.workers.get("sl-w1")!.output()).not.toContain("stream failed");
    } finally {
      await stack.stop();
    }
  }, 60_000);

  it("kill -9 of a coordinator replica under load: every accepted submit runs to SUCCEEDED exactly once", async () => {
    const stack = await startStack("coord_kill_coord", {
      coordinators: 2,
      workers: [{ id: "fo-a", concurrency: 8 }, { id: "fo-b", concurrency: 8 }, { id: "fo-c", concurrency: 8 }],
    });
    try {
      const total = 300;
      let retried = 0;
      // Each submit is retried with its idempotency key until a replica accepts it, as a client would.
      const submit = async (i: number): Promise<string> => {
        for (;;) {
          try {
            return (await stack.tasks.submitTask(submitRequest({ capability: "sleep", input: { ms: 100 }, idempotencyKey: `load-${i}` }))).task!.id;
          } catch (error) {
            const e = MeshError.from(error);
            if (e.code !== Code.UNAVAILABLE && e.code !== Code.DEADLINE_EXCEEDED && e.code !== Code.CANCELLED && e.code !== Code.INTERNAL) throw error;
            retried++;
            await new Promise((r) => setTimeout(r, 100));
          }
        }
      };
      const ids: string[] = [];
      const killed = (async () => {
        await until("a third of the submits", () => ids.length >= total / 3);
        stack.coordinators[0]!.child.kill("SIGKILL");
      })();
      for (let i = 0; i < total; i += 10) ids.push(...await Promise.all(Array.from({ length: 10 }, (_, k) => submit(i + k))));
      await killed;
      expect(new Set(ids).size).toBe(total);
      await until("every task to end", async () => Number((await stack.sql.query(
        "SELECT count(*) AS n FROM ledger.tasks WHERE state IN ('SUCCEEDED', 'FAILED', 'CANCELLED', 'TIMED_OUT')")).rows[0].n) === total, 45_000);
      const { rows } = await stack.sql.query<{ tasks: string; succeeded: string; successes: string }>(
        `SELECT (SELECT count(*) FROM ledger.tasks) AS tasks,
                (SELECT count(*) FROM ledger.tasks WHERE state = 'SUCCEEDED') AS succeeded,
                (SELECT count(*) FROM ledger.history WHERE kind = 'SUCCEEDED') AS successes`);
      expect(rows[0]).toEqual({ tasks: String(total), succeeded: String(total), successes: String(total) });
      console.info(`coordinator kill -9: ${total} tasks, ${retried} submit retries`);
    } finally {
      await stack.stop();
    }
  }, 90_000);
});
