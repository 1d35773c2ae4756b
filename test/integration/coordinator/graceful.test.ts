import { describe, expect, it } from "vitest";
import { TaskState } from "@taskmesh/contracts/gen/taskmesh/task/v1/task";
import { startStack, submitRequest, until } from "./stack.js";

describe("coordinator and worker: graceful stops hand work on without losing an attempt", () => {
  it("a worker stopped with SIGTERM hands back a task it cannot finish in its grace; another runs it, the attempt not counted", async () => {
    const stack = await startStack("coord_drain_worker", { workers: [{ id: "dr-w1", capabilities: ["sleep"], grace: "500ms" }] });
    try {
      const { task } = await stack.tasks.submitTask(submitRequest({ capability: "sleep", input: { ms: 3000 } }));
      await until("the sleep to run", async () => (await stack.tasks.getTask({ id: task!.id, view: 0 })).task!.state === TaskState.TASK_STATE_RUNNING);
      const first = stack.workers.get("dr-w1")!;
      first.child.kill("SIGTERM");
      expect(await first.exited).toBe(0);
      // Handed back: pending again, its attempt not counted, waiting for a worker.
      const back = (await stack.tasks.getTask({ id: task!.id, view: 0 })).task!;
      expect([back.state, back.attempts], await stack.describe()).toEqual([TaskState.TASK_STATE_PENDING, 0]);
      await stack.startWorker({ id: "dr-w2", capabilities: ["sleep"] });
      const done = await stack.settle(task!.id, 20_000);
      expect([done.state, done.workerId, done.attempts]).toEqual([TaskState.TASK_STATE_SUCCEEDED, "dr-w2", 1]);
      const { rows } = await stack.sql.query<{ kind: string; worker_id: string }>("SELECT kind, worker_id FROM ledger.history WHERE task_id = $1 ORDER BY sequence", [task!.id]);
      expect(rows.map((r) => `${r.kind}:${r.worker_id}`)).toEqual(["SUBMITTED:", "STARTED:dr-w1", "RELEASED:dr-w1", "STARTED:dr-w2", "SUCCEEDED:dr-w2"]);
    } finally {
      await stack.stop();
    }
  }, 60_000);

  it("a coordinator stopped with SIGTERM sends its workers to another replica; their running tasks finish there, first attempt", async () => {
    const stack = await startStack("coord_drain_coord", { coordinators: 2, workers: [{ id: "dc-w1", capabilities: ["sleep"] }, { id: "dc-w2", capabilities: ["sleep"] }] });
    try {
      const ids = await Promise.all(Array.from({ length: 4 }, async () => (await stack.tasks.submitTask(submitRequest({ capability: "sleep", input: { ms: 2500 } }))).task!.id));
      await until("all four to run", async () => Number((await stack.sql.query("SELECT count(*) AS n FROM ledger.tasks WHERE state = 'RUNNING'")).rows[0].n) === 4);
      // Stop the replica holding dc-w1's stream; the other one stays.
      const holder = (await stack.sql.query<{ coordinator_id: string }>("SELECT coordinator_id FROM ledger.workers WHERE worker_id = 'dc-w1'")).rows[0]!.coordinator_id;
      const victim = holder.includes("coordinator-0/") ? 0 : 1;
      const coordinator = stack.coordinators[victim]!;
      coordinator.child.kill("SIGTERM");
      expect(await coordinator.exited).toBe(0);
      const done = await Promise.all(ids.map((id) => stack.settle(id, 20_000)));
      expect(done.map((t) => [t.state, t.attempts])).toEqual(ids.map(() => [TaskState.TASK_STATE_SUCCEEDED, 1]));
      // Every worker is connected again, to the replica left.
      await until("both workers to be connected", async () => Number((await stack.sql.query(
        "SELECT count(*) AS n FROM ledger.workers WHERE state = 'CONNECTED' AND coordinator_id LIKE $1", [`%coordinator-${1 - victim}/%`])).rows[0].n) === 2);
    } finally {
      await stack.stop();
    }
  }, 60_000);
});
