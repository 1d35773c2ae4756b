import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CreateWorkflowRequest, WorkflowTaskCreate } from "@taskmesh/contracts/gen/taskmesh/ledger/v1/ledger";
import { FailurePolicy, TaskState, WorkflowState, type Task, type Workflow } from "@taskmesh/contracts/gen/taskmesh/task/v1/task";
import { Code, createLogger, uuidv7 } from "@taskmesh/kit";
import { Retention } from "@taskmesh/ledger-service";
import { connectWorker, createRequest, failure, hashOf, seconds, startLedger, type LedgerHarness } from "./support.js";

/** A workflow task: `name` running `capability` with `input`, after `dependsOn`. */
function step(name: string, capability: string, dependsOn: string[] = [], input: Record<string, unknown> = { step: name }): WorkflowTaskCreate {
  return { name, task: createRequest({ capability, input, traceId: "", traceparent: "", createdBy: "" }), dependsOn };
}

function workflowRequest(tasks: WorkflowTaskCreate[], overrides: Partial<CreateWorkflowRequest> = {}): CreateWorkflowRequest {
  return {
    id: uuidv7(), name: "test", failurePolicy: FailurePolicy.FAILURE_POLICY_FAIL_FAST, idempotencyKey: "", requestHash: hashOf(tasks.map((t) => t.name)),
    createdBy: "alice", traceId: "0af7651916cd43dd8448eb211c80319c", traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    labels: {}, tasks, ...overrides,
  };
}

const stateOf = (w: Workflow) => Object.fromEntries(w.nodes.map((n) => [n.name, TaskState[n.state].replace("TASK_STATE_", "")]));

describe("ledger: workflows — tasks with dependencies, moved by the database in the transactions that finish them", () => {
  let h: LedgerHarness;
  const workflow = async (id: string) => (await h.client.getWorkflow({ id })).workflow!;
  /** Leases every due task of `capability` to worker `wf-worker` and answers them. */
  const claim = async (capability: string, n = 10): Promise<Task[]> => (await h.client.assignTasks({ capability, workerIds: Array(n).fill("wf-worker"), leaseDuration: seconds(30) })).tasks;
  const succeed = (t: Task, output: Record<string, unknown>) => h.client.completeTask({ taskId: t.id, leaseId: t.lease!.leaseId, output, expectedSequence: undefined });
  const fail = (t: Task) => h.client.failTask({ taskId: t.id, leaseId: t.lease!.leaseId, error: { reason: "BIZ_BROKEN", message: "broken", retryable: false, details: undefined }, expectedSequence: undefined });

  beforeAll(async () => {
    h = await startLedger("ledger_workflow");
    await connectWorker(h.client, "wf-worker", ["wf-a", "wf-b", "wf-c", "wf-d", "wf-fan", "wf-ret-a", "wf-ret-b", "wf-big"]);
  });
  afterAll(async () => { await h?.stop(); });

  it("a diamond: the first task PENDING, the others WAITING; each becomes PENDING (READY) when its last dependency SUCCEEDED, its references resolved", async () => {
    const { workflow: created, created: isNew, readyCapabilities } = await h.client.createWorkflow(workflowRequest([
      step("a", "wf-a"),
      step("b", "wf-b", ["a"], { from: { $ref: "a.value" } }),
      step("c", "wf-c", ["a"], { whole: { $ref: "a" }, deep: [{ $ref: "a.nested.x" }, { $ref: "a.missing" }] }),
      step("d", "wf-d", ["b", "c"], { b: { $ref: "b.got" }, c: { $ref: "c" }, plain: { $ref: 1 } as never }),
    ]));
    expect(isNew).toBe(true);
    expect(readyCapabilities).toEqual(["wf-a"]);
    expect(stateOf(created!)).toEqual({ a: "PENDING", b: "WAITING", c: "WAITING", d: "WAITING" });
    expect(created!.nodes.find((n) => n.name === "d")!.dependsOn).toEqual(["b", "c"]);
    expect(created!.state).toBe(WorkflowState.WORKFLOW_STATE_RUNNING);
    expect(await claim("wf-b")).toEqual([]); // WAITING tasks are never dispatched

    const [a] = await claim("wf-a");
    const done = await succeed(a!, { value: 42, nested: { x: "deep" } });
    expect(done.readyCapabilities.sort()).toEqual(["wf-b", "wf-c"]);
    expect(stateOf(await workflow(created!.id))).toEqual({ a: "SUCCEEDED", b: "PENDING", c: "PENDING", d: "WAITING" });
    const [b] = await claim("wf-b");
    const [c] = await claim("wf-c");
    expect(b!.input).toEqual({ from: 42 });
    expect(c!.input).toEqual({ whole: { value: 42, nested: { x: "deep" } }, deep: ["deep", null] });
    const ready = (await h.client.getTaskHistory({ taskId: b!.id, afterSequence: undefined, pageSize: 0, pageToken: "" })).transitions;
    expect(ready.map((t) => [t.sequence, TaskState[t.toState], t.actor])).toEqual([[1n, "TASK_STATE_WAITING", "alice"], [2n, "TASK_STATE_PENDING", "ledger"]]);

    expect((await succeed(b!, { got: "b" })).readyCapabilities).toEqual([]); // d still waits for c
    expect(stateOf(await workflow(created!.id)).d).toBe("WAITING");
    const batch = await h.client.completeTasks({ tasks: [{ taskId: c!.id, leaseId: c!.lease!.leaseId, output: { got: "c" }, expectedSequence: undefined }] });
    expect(batch.results[0]!.result?.$case === "response" && batch.results[0]!.result.value.readyCapabilities).toEqual(["wf-d"]);
    const [d] = await claim("wf-d");
    expect(d!.input).toEqual({ b: "b", c: { got: "c" }, plain: { $ref: 1 } });
    expect(d!.workflowId).toBe(created!.id);
    expect(d!.workflowStep).toBe("d");
    expect(d!.dependsOn).toEqual([b!.id, c!.id]);
    await succeed(d!, {});
    const finished = await workflow(created!.id);
    expect(finished.state).toBe(WorkflowState.WORKFLOW_STATE_SUCCEEDED);
    expect(finished.counts!.succeeded).toBe(4n);
    expect(finished.finishedAt).toBeDefined();
    const listed = await h.client.listTasks({ states: [], capabilities: [], createdAfter: undefined, createdBefore: undefined, workerId: "", createdBy: "", pageSize: 10, pageToken: "", view: 0, workflowId: created!.id, parentId: "" });
    expect(listed.tasks.map((t) => t.workflowStep).sort()).toEqual(["a", "b", "c", "d"]);
  });

  it("FAIL_FAST: a task that fails cancels every unfinished task of the workflow, running ones included", async () => {
    const { workflow: w } = await h.client.createWorkflow(workflowRequest([step("a", "wf-a"), step("x", "wf-b"), step("b", "wf-c", ["a"]), step("c", "wf-d", ["b"])]));
    const running = await claim("wf-b");
    await h.client.startTask({ taskId: running[0]!.id, leaseId: running[0]!.lease!.leaseId, expectedSequence: undefined, leaseDuration: undefined });
    const [a] = await claim("wf-a");
    await fail(a!);
    const after = await workflow(w!.id);
    expect(stateOf(after)).toEqual({ a: "FAILED", x: "CANCELLED", b: "CANCELLED", c: "CANCELLED" });
    expect(after.state).toBe(WorkflowState.WORKFLOW_STATE_FAILED);
    const cancel = (await h.client.getTaskHistory({ taskId: running[0]!.id, afterSequence: undefined, pageSize: 0, pageToken: "" })).transitions.at(-1)!;
    expect([TaskState[cancel.fromState], cancel.actor, cancel.reason]).toEqual(["TASK_STATE_RUNNING", "ledger", "BIZ_WORKFLOW_FAILED: task a ended FAILED"]);
    // The cancelled task's worker finds its lease gone.
    expect(await failure(succeed(running[0]!, {}))).toMatchObject({ code: Code.FAILED_PRECONDITION, reason: "BIZ_TASK_ALREADY_FINISHED" });
  });

  it("CONTINUE: only what depends on the failed task, directly or not, is cancelled; the rest runs to the end", async () => {
    const { workflow: w } = await h.client.createWorkflow(workflowRequest([
      step("a", "wf-a"), step("b", "wf-b", ["a"]), step("c", "wf-c", ["b"]), step("other", "wf-d"), step("after-other", "wf-fan", ["other"]),
    ], { failurePolicy: FailurePolicy.FAILURE_POLICY_CONTINUE }));
    const [a] = await claim("wf-a");
    await fail(a!);
    expect(stateOf(await workflow(w!.id))).toEqual({ a: "FAILED", b: "CANCELLED", c: "CANCELLED", other: "PENDING", "after-other": "WAITING" });
    const c = (await workflow(w!.id)).nodes.find((n) => n.name === "c")!;
    const cancelled = (await h.client.getTaskHistory({ taskId: c.taskId, afterSequence: undefined, pageSize: 0, pageToken: "" })).transitions.at(-1)!;
    expect(cancelled.reason).toBe("BIZ_DEPENDENCY_NOT_SUCCEEDED: task a ended FAILED");
    const [other] = await claim("wf-d");
    await succeed(other!, {});
    const [after] = await claim("wf-fan");
    await succeed(after!, {});
    const end = await workflow(w!.id);
    expect(stateOf(end)).toMatchObject({ other: "SUCCEEDED", "after-other": "SUCCEEDED" });
    expect(end.state).toBe(WorkflowState.WORKFLOW_STATE_FAILED);
  });

  it("CancelWorkflow cancels every unfinished task (answering the leases it ended) and the workflow is CANCELLED; again, nothing changes", async () => {
    const { workflow: w } = await h.client.createWorkflow(workflowRequest([step("a", "wf-a"), step("b", "wf-b"), step("c", "wf-c", ["a", "b"])]));
    const [a] = await claim("wf-a");
    await succeed(a!, {});
    const [b] = await claim("wf-b");
    const cancelled = await h.client.cancelWorkflow({ id: w!.id, reason: "no longer needed", actor: "bob" });
    expect(cancelled.endedLeases.map((l) => l.taskId)).toEqual([b!.id]);
    expect(stateOf(cancelled.workflow!)).toEqual({ a: "SUCCEEDED", b: "CANCELLED", c: "CANCELLED" });
    expect(cancelled.workflow!.state).toBe(WorkflowState.WORKFLOW_STATE_CANCELLED);
    expect(cancelled.workflow!.cancelledAt).toBeDefined();
    const last = (await h.client.getTaskHistory({ taskId: b!.id, afterSequence: undefined, pageSize: 0, pageToken: "" })).transitions.at(-1)!;
    expect([last.actor, last.reason]).toEqual(["bob", "no longer needed"]);
    const again = await h.client.cancelWorkflow({ id: w!.id, reason: "", actor: "bob" });
    expect(again.endedLeases).toEqual([]);
    expect(stateOf(again.workflow!)).toEqual(stateOf(cancelled.workflow!));
    expect(await failure(h.client.cancelWorkflow({ id: uuidv7(), reason: "", actor: "" }))).toMatchObject({ code: Code.NOT_FOUND, reason: "RES_WORKFLOW_NOT_FOUND" });
  });

  it("is idempotent by workflow id and by key; refuses a cycle, an unknown dependency and a reference to a task it does not depend on, storing nothing", async () => {
    const request = workflowRequest([step("a", "wf-a"), step("b", "wf-b", ["a"])], { idempotencyKey: "wf-key" });
    const first = await h.client.createWorkflow(request);
    const again = await h.client.createWorkflow({ ...request, id: uuidv7(), tasks: request.tasks.map((t) => ({ ...t, task: { ...t.task!, id: uuidv7() } })) });
    expect([again.created, again.workflow!.id]).toEqual([false, first.workflow!.id]);
    expect(await failure(h.client.createWorkflow({ ...request, id: uuidv7(), requestHash: "0".repeat(64) }))).toMatchObject({ code: Code.ALREADY_EXISTS, reason: "RES_IDEMPOTENCY_KEY_REUSED", metadata: { workflow_id: first.workflow!.id } });

    const before = (await h.sql.query<{ n: string }>("SELECT count(*) AS n FROM ledger.tasks")).rows[0]!.n;
    const cycle = await failure(h.client.createWorkflow(workflowRequest([step("a", "wf-a", ["c"]), step("b", "wf-b", ["a"]), step("c", "wf-c", ["b"])])));
    expect(cycle).toMatchObject({ code: Code.INVALID_ARGUMENT, reason: "VAL_WORKFLOW_CYCLE" });
    expect(cycle.violations).toEqual([{ field: "tasks[0].depends_on", description: "the dependencies make a cycle: a → c → b → a", reason: "VAL_WORKFLOW_CYCLE" }]);
    const bad = await failure(h.client.createWorkflow(workflowRequest([step("a", "wf-a", ["nope"]), step("b", "wf-b", [], { x: { $ref: "a.out" } }), step("a", "wf-c")])));
    expect(bad.violations.map((v) => v.field)).toEqual(["tasks[2].name", "tasks[0].depends_on[0]", "tasks[1].task.input"]);
    expect((await h.sql.query<{ n: string }>("SELECT count(*) AS n FROM ledger.tasks")).rows[0]!.n).toBe(before);
  });

  it("retention removes a workflow's tasks only once all of them finished, then its edges and the workflow itself", async () => {
    const { workflow: w } = await h.client.createWorkflow(workflowRequest([step("a", "wf-ret-a"), step("b", "wf-ret-b", ["a"])]));
    const [a] = await claim("wf-ret-a");
    await succeed(a!, { done: true });
    // Everything published so far, as the relay would have it; no retention period.
    await h.sql.query(`UPDATE ledger.relay_cursor c SET txid = h.txid, task_id = h.task_id, sequence = h.sequence
      FROM (SELECT txid, task_id, sequence FROM ledger.history ORDER BY txid DESC, task_id DESC, sequence DESC LIMIT 1) h WHERE c.relay = 'tasks'`);
    const retention = new Retention(h.sql, { retentionMs: 1, logger: createLogger({ level: "silent" }) });
    const count = async (sql: string) => Number((await h.sql.query<{ n: string }>(sql, [w!.id])).rows[0]!.n);
    const kept = async () => [
      await count("SELECT count(*) AS n FROM ledger.tasks WHERE workflow_id = $1"),
      await count("SELECT count(*) AS n FROM ledger.task_deps d JOIN ledger.tasks t ON t.id = d.task_id WHERE t.workflow_id = $1"),
      await count("SELECT count(*) AS n FROM ledger.workflows WHERE id = $1"),
    ];
    await new Promise((r) => setTimeout(r, 20));
    await retention.pass();
    expect(await kept()).toEqual([2, 1, 1]); // b still waits to run: a (finished) stays with it
    const [b] = await claim("wf-ret-b");
    await succeed(b!, {});
    await h.sql.query(`UPDATE ledger.relay_cursor c SET txid = h.txid, task_id = h.task_id, sequence = h.sequence
      FROM (SELECT txid, task_id, sequence FROM ledger.history ORDER BY txid DESC, task_id DESC, sequence DESC LIMIT 1) h WHERE c.relay = 'tasks'`);
    await new Promise((r) => setTimeout(r, 20));
    await retention.pass();
    expect(await count("SELECT count(*) AS n FROM ledger.tasks WHERE workflow_id = $1")).toBe(0);
    expect(await count("SELECT count(*) AS n FROM ledger.workflows WHERE id = $1")).toBe(0);
    expect(Number((await h.sql.query<{ n: string }>("SELECT count(*) AS n FROM ledger.task_deps WHERE task_id = $1 OR depends_on = $1", [b!.id])).rows[0]!.n)).toBe(0);
  });

  it("two dependencies finishing in overlapping transactions: the one that commits last makes the task PENDING, with the other's output too", async () => {
    const { workflow: w } = await h.client.createWorkflow(workflowRequest([
      step("a", "wf-fan"), step("b", "wf-fan"), step("d", "wf-d", ["a", "b"], { a: { $ref: "a.v" }, b: { $ref: "b.v" } }),
    ]));
    const claimed = await claim("wf-fan", 2);
    for (const t of claimed) await h.client.startTask({ taskId: t.id, leaseId: t.lease!.leaseId, expectedSequence: undefined, leaseDuration: undefined });
    const [a, b] = ["a", "b"].map((name) => claimed.find((t) => t.workflowStep === name)!);
    // As a result's write does it: RUNNING → SUCCEEDED with the output, the lease ended.
    const finish = `UPDATE ledger.tasks SET state = 'SUCCEEDED', output = $2, finished_at = now(), updated_at = now(), lease_id = NULL,
                      lease_worker_id = NULL, lease_acquired_at = NULL, lease_expires_at = NULL, sequence = sequence + 1 WHERE id = $1`;
    const [first, second] = [await h.sql.connect(), await h.sql.connect()];
    try {
      await first.query("BEGIN");
      await first.query(finish, [a!.id, { v: "from a" }]);
      await second.query("BEGIN");
      const waiting = second.query(finish, [b!.id, { v: "from b" }]); // blocks on d, which the first holds
      await new Promise((r) => setTimeout(r, 300));
      await first.query("COMMIT");
      await waiting;
      await second.query("COMMIT");
    } finally {
      first.release();
      second.release();
    }
    const [d] = await claim("wf-d");
    expect(d!.input).toEqual({ a: "from a", b: "from b" });
    expect(stateOf(await workflow(w!.id))).toEqual({ a: "SUCCEEDED", b: "SUCCEEDED", d: "PENDING" });
  });

  it("10,000 tasks in one workflow (100 layers of 100, each task after one of the layer before): stored in one call, read back whole, and the next layer runs when the first succeeded", async () => {
    const width = 100;
    const tasks = Array.from({ length: 10_000 }, (_, k) => {
      const layer = Math.floor(k / width);
      return step(`n${k}`, "wf-big", layer === 0 ? [] : [`n${k - width}`], layer === 0 ? { k } : { k, from: { $ref: `n${k - width}.k` } });
    });
    const t0 = Date.now();
    const { workflow: w } = await h.client.createWorkflow(workflowRequest(tasks));
    console.info(`ledger: a 10,000-task workflow stored in ${Date.now() - t0} ms`);
    expect(w!.nodes).toHaveLength(10_000);
    expect(w!.counts!.pending).toBe(100n);
    expect(w!.counts!.waiting).toBe(9_900n);
    const first = await claim("wf-big", width);
    expect(first).toHaveLength(width);
    await h.client.completeTasks({ tasks: first.map((t) => ({ taskId: t.id, leaseId: t.lease!.leaseId, output: t.input!, expectedSequence: undefined })) });
    const second = await claim("wf-big", width);
    expect(second.map((t) => t.input).sort((a, b) => Number(a!.k) - Number(b!.k))).toEqual(Array.from({ length: width }, (_, i) => ({ k: width + i, from: i })));
    expect((await workflow(w!.id)).counts!.waiting).toBe(9_800n);
  });

  it("fan-in under concurrency: 200 dependencies of one task completed at once by 20 parallel calls make it PENDING exactly once, with every output", async () => {
    const leaves = Array.from({ length: 200 }, (_, i) => step(`leaf-${i}`, "wf-fan"));
    const join = step("join", "wf-d", leaves.map((l) => l.name), Object.fromEntries(leaves.map((l) => [l.name, { $ref: `${l.name}.i` }])));
    const { workflow: w } = await h.client.createWorkflow(workflowRequest([...leaves, join]));
    const claimed: Task[] = [];
    while (claimed.length < 200) claimed.push(...await claim("wf-fan", 100));
    const chunks = Array.from({ length: 20 }, (_, k) => claimed.slice(k * 10, k * 10 + 10));
    await Promise.all(chunks.map((chunk) => h.client.completeTasks({ tasks: chunk.map((t) => ({ taskId: t.id, leaseId: t.lease!.leaseId, output: { i: Number(t.workflowStep.slice(5)) }, expectedSequence: undefined })) })));
    const [joined, ...more] = await claim("wf-d");
    expect(more).toEqual([]);
    expect(joined!.input).toEqual(Object.fromEntries(leaves.map((_, i) => [`leaf-${i}`, i])));
    const history = (await h.client.getTaskHistory({ taskId: joined!.id, afterSequence: undefined, pageSize: 0, pageToken: "" })).transitions;
    expect(history.filter((t) => t.toState === TaskState.TASK_STATE_PENDING)).toHaveLength(1);
    expect(stateOf(await workflow(w!.id)).join).toBe("PENDING");
  });
});
