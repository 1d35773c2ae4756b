import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TaskState } from "@taskmesh/contracts/gen/taskmesh/task/v1/task";
import { startStack, submitRequest, until, type Stack } from "./stack.js";

/** Tasks per worker among `ids`, from the ledger. */
async function perWorker(stack: Stack, ids: string[]): Promise<Record<string, number>> {
  const { rows } = await stack.sql.query<{ worker_id: string; n: string }>(
    "SELECT worker_id, count(*) AS n FROM ledger.tasks WHERE id = ANY($1::uuid[]) GROUP BY worker_id ORDER BY worker_id", [ids]);
  return Object.fromEntries(rows.map((r) => [r.worker_id, Number(r.n)]));
}

describe("coordinator: dispatch strategies, switched live through config", () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack("coord_dispatch", {
      config: true,
      workers: [{ id: "wa", weight: 3, concurrency: 4 }, { id: "wb", weight: 1, concurrency: 4 }, { id: "wc", weight: 1, concurrency: 4 }],
    });
  }, 180_000); // the processes start one after the other, each within START_MS
  afterAll(async () => { await stack?.stop(); }, 30_000);

  const runOneByOne = async (n: number): Promise<string[]> => {
    const ids: string[] = [];
    for (let i = 0; i < n; i++) {
      const { task } = await stack.tasks.submitTask(submitRequest({ capability: "echo", input: { i } }));
      ids.push(task!.id);
      await until("the echo to finish", async () => (await stack.tasks.getTask({ id: task!.id, view: 1 })).task!.state === TaskState.TASK_STATE_SUCCEEDED, 5000);
    }
    return ids;
  };

  it("least loaded (the default) spreads long tasks evenly: no worker gets a third while another idles", async () => {
    const ids = await Promise.all(Array.from({ length: 6 }, async () => (await stack.tasks.submitTask(submitRequest({ capability: "sleep", input: { ms: 1500 } }))).task!.id));
    await until("all six to run", async () => Number((await stack.sql.query("SELECT count(*) AS n FROM ledger.tasks WHERE id = ANY($1::uuid[]) AND state = 'RUNNING'", [ids])).rows[0].n) === 6);
    expect(await perWorker(stack, ids)).toEqual({ wa: 2, wb: 2, wc: 2 });
    await Promise.all(ids.map((id) => stack.settle(id)));
  });

  it("weighted round robin, once set in config, hands out tasks 3:1:1 by the workers' weights", async () => {
    await stack.config!.client.put({ key: "/coordinator/dispatch/strategy", value: "weighted_round_robin", expectedRevision: undefined });
    await new Promise((r) => setTimeout(r, 500)); // the coordinator follows the key live
    const ids = await runOneByOne(25);
    expect(await perWorker(stack, ids)).toEqual({ wa: 15, wb: 5, wc: 5 });
  });

  it("round robin, switched to without a restart, takes the workers in turn", async () => {
    await stack.config!.client.put({ key: "/coordinator/dispatch/strategy", value: "round_robin", expectedRevision: undefined });
    await new Promise((r) => setTimeout(r, 500));
    const ids = await runOneByOne(12);
    expect(await perWorker(stack, ids)).toEqual({ wa: 4, wb: 4, wc: 4 });
    const { rows } = await stack.sql.query<{ worker_id: string }>("SELECT worker_id FROM ledger.tasks WHERE id = ANY($1::uuid[]) ORDER BY id", [ids]);
    const order = rows.map((r) => r.worker_id);
    // In turn: no worker twice in a row.
    expect(order.every((w, i) => i === 0 || w !== order[i - 1])).toBe(true);
  });

  it("keeps the last good strategy when config holds an unknown one", async () => {
    await stack.config!.client.put({ key: "/coordinator/dispatch/strategy", value: "fastest_please", expectedRevision: undefined });
    await new Promise((r) => setTimeout(r, 500));
    const ids = await runOneByOne(6);
    expect(await perWorker(stack, ids)).toEqual({ wa: 2, wb: 2, wc: 2 });
    expect(stack.coordinators[0]!.output()).toMatch(/fastest_please|dispatch\/strategy/);
  });
});

describe("coordinator: sync match at submit", () => {
  let stack: Stack;
  beforeAll(async () => {
    // No periodic pass (its claims in flight hold the slots they plan): only news wakes the dispatcher here.
    stack = await startStack("coord_sync_match", { workers: [{ id: "solo", concurrency: 1 }], coordinatorEnv: { TASKMESH_COORDINATOR_POLL: "60s" } });
    // The pass that follows the worker's registration has run once its first task is done.
    await stack.run({ capability: "echo", input: {} });
  }, 180_000);
  afterAll(async () => { await stack?.stop(); }, 30_000);

  const startedAt = async (ids: string[]) => (await stack.sql.query<{ id: string }>(
    "SELECT id FROM ledger.tasks WHERE id = ANY($1::uuid[]) ORDER BY started_at", [ids])).rows.map((r) => r.id);

  it("creates a task that finds a free slot already leased to that worker, in its insert, and runs it", async () => {
    const { task } = await stack.tasks.submitTask(submitRequest({ capability: "sleep", input: { ms: 300 } }));
    // The submit's answer is the task as its insert committed it: leased already (an AssignTasks would come after).
    expect(task).toMatchObject({ state: TaskState.TASK_STATE_PENDING, lease: { workerId: "solo", attempt: 1, acquiredAt: task!.createdAt } });
    const done = await stack.settle(task!.id);
    expect([done.state, done.attempts, done.workerId]).toEqual([TaskState.TASK_STATE_SUCCEEDED, 1, "solo"]);
  });

  it("while tasks wait for the busy slot, a later submit waits behind them: they start in submit order, each once", async () => {
    const ids: string[] = [];
    const submit = async (ms: number) => ids.push((await stack.tasks.submitTask(submitRequest({ capability: "sleep", input: { ms } }))).task!.id);
    await submit(600);
    await until("the first to run", async () => (await stack.tasks.getTask({ id: ids[0]!, view: 1 })).task!.state === TaskState.TASK_STATE_RUNNING, 5000);
    await submit(200);
    await submit(200);
    // Submitted while the first still runs, then again right as its slot frees.
    await until("the first to finish", async () => (await stack.tasks.getTask({ id: ids[0]!, view: 1 })).task!.state === TaskState.TASK_STATE_SUCCEEDED, 5000);
    await submit(200);
    const final = await Promise.all(ids.map((id) => stack.settle(id)));
    expect(final.map((t) => [t.state, t.attempts])).toEqual(ids.map(() => [TaskState.TASK_STATE_SUCCEEDED, 1]));
    expect(await startedAt(ids)).toEqual(ids);
  });
});
