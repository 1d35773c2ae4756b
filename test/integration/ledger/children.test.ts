import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TaskState, TransitionKind, type Task } from "@taskmesh/contracts/gen/taskmesh/task/v1/task";
import { Code, uuidv7 } from "@taskmesh/kit";
import { connectWorker, createRequest, failure, seconds, startLedger, type LedgerHarness } from "./support.js";

describe("ledger: child tasks — spawned under the parent's lease by step, a parked parent resumed when they end", () => {
  let h: LedgerHarness;
  const claim = async (capability: string, n = 10): Promise<Task[]> => (await h.client.assignTasks({ capability, workerIds: Array(n).fill("kid-worker"), leaseDuration: seconds(30) })).tasks;
  const start = (t: Task) => h.client.startTask({ taskId: t.id, leaseId: t.lease!.leaseId, expectedSequence: undefined, leaseDuration: undefined });
  const succeed = (t: Task, output: Record<string, unknown> = {}) => h.client.completeTask({ taskId: t.id, leaseId: t.lease!.leaseId, output, expectedSequence: undefined });
  const fail = (t: Task) => h.client.failTask({ taskId: t.id, leaseId: t.lease!.leaseId, error: { reason: "BIZ_BROKEN", message: "broken", retryable: false, details: undefined }, expectedSequence: undefined });
  const spawn = (parent: Task, steps: string[], capability = "kid") => h.client.spawnChildren({
    taskId: parent.id, leaseId: parent.lease!.leaseId,
    children: steps.map((step) => ({ step, task: createRequest({ capability, input: { step }, createdBy: "", traceId: "", traceparent: "" }) })),
  });
  const park = (parent: Task, children: string[], any = false) => h.client.parkTask({ taskId: parent.id, leaseId: parent.lease!.leaseId, children, any });
  const get = async (id: string) => (await h.client.getTask({ id, view: 0 })).task!;
  /** A running parent of capability `capability` (created, claimed and started). */
  const runningParent = async (capability = "boss"): Promise<Task> => {
    await h.client.createTask(createRequest({ capability, createdBy: "carol" }));
    const [parent] = await claim(capability, 1);
    await start(parent!);
    return parent!;
  };

  beforeAll(async () => {
    h = await startLedger("ledger_children");
    await connectWorker(h.client, "kid-worker", ["boss", "kid"]);
  });
  afterAll(async () => { await h?.stop(); });

  it("spawns children keyed by step (again: the same children), with the parent's id, submitter and trace; lists them by parent", async () => {
    const parent = await runningParent();
    const first = await spawn(parent, ["a", "b"]);
    expect(first.created).toEqual([true, true]);
    expect(first.children.map((c) => [c.workflowStep, c.parentId, c.createdBy, c.traceId, TaskState[c.state]])).toEqual([
      ["a", parent.id, "carol", parent.traceId, "TASK_STATE_PENDING"], ["b", parent.id, "carol", parent.traceId, "TASK_STATE_PENDING"],
    ]);
    const again = await spawn(parent, ["b", "c"]);
    expect(again.created).toEqual([false, true]);
    expect(again.children[0]!.id).toBe(first.children[1]!.id);
    const listed = await h.client.listTasks({ states: [], capabilities: [], createdAfter: undefined, createdBefore: undefined, workerId: "", createdBy: "", pageSize: 10, pageToken: "", view: 0, workflowId: "", parentId: parent.id });
    expect(listed.tasks.map((t) => t.workflowStep).sort()).toEqual(["a", "b", "c"]);
    expect(await failure(h.client.spawnChildren({ taskId: parent.id, leaseId: uuidv7(), children: [{ step: "d", task: createRequest({ capability: "kid" }) }] })))
      .toMatchObject({ code: Code.ABORTED, reason: "RES_LEASE_LOST" });
    expect((await failure(spawn(parent, ["Bad Step"]))).violations.map((v) => v.field)).toEqual(["children[0].step"]);
    for (const kid of await claim("kid")) await succeed(kid); // leave no kid for the tests below
  });

  it("a parked parent holds no lease, waits for all it names, and is PENDING again (READY) in the transaction that ends the last — a failure counts as an end", async () => {
    const parent = await runningParent();
    const kids = (await spawn(parent, ["x", "y", "z"])).children;
    const parked = await park(parent, kids.map((k) => k.id));
    expect([TaskState[parked.task!.state], TransitionKind[parked.transition!.kind], parked.task!.attempts, parked.task!.lease]).toEqual(["TASK_STATE_WAITING", "TRANSITION_KIND_PARKED", 0, undefined]);
    const running = await claim("kid");
    expect(running).toHaveLength(3);
    await succeed(running.find((k) => k.workflowStep === "x")!, { got: "x" });
    expect((await succeed(running.find((k) => k.workflowStep === "y")!, { got: "y" })).readyCapabilities).toEqual([]);
    expect((await get(parent.id)).state).toBe(TaskState.TASK_STATE_WAITING);
    const last = await fail(running.find((k) => k.workflowStep === "z")!);
    expect(last.readyCapabilities).toEqual(["boss"]);
    const resumed = await get(parent.id);
    expect(TaskState[resumed.state]).toBe("TASK_STATE_PENDING");
    const history = (await h.client.getTaskHistory({ taskId: parent.id, afterSequence: undefined, pageSize: 0, pageToken: "" })).transitions;
    expect(history.map((t) => [TransitionKind[t.kind], t.actor])).toEqual([
      ["TRANSITION_KIND_SUBMITTED", "carol"], ["TRANSITION_KIND_STARTED", "kid-worker"], ["TRANSITION_KIND_PARKED", "kid-worker"], ["TRANSITION_KIND_READY", "ledger"],
    ]);
    // Its next attempt finds the same children, ended, with their outcomes.
    const [again] = await claim("boss", 1);
    expect(again!.id).toBe(parent.id);
    await start(again!);
    const found = await spawn(again!, ["x", "y", "z"]);
    expect(found.created).toEqual([false, false, false]);
    expect(found.children.map((c) => [TaskState[c.state], c.output ?? c.error?.reason])).toEqual([
      ["TASK_STATE_SUCCEEDED", { got: "x" }], ["TASK_STATE_SUCCEEDED", { got: "y" }], ["TASK_STATE_FAILED", "BIZ_BROKEN"],
    ]);
    await succeed(again!);
  });

  it("`any` resumes at the first end; nothing left to wait for releases at once; a stranger is refused", async () => {
    const parent = await runningParent();
    const kids = (await spawn(parent, ["p", "q"])).children;
    await park(parent, kids.map((k) => k.id), true);
    const [p] = (await claim("kid")).filter((k) => k.workflowStep === "p");
    // A child's result that resumes its parent says so, for the caller to dispatch it.
    expect((await succeed(p!)).readyCapabilities).toEqual(["boss"]);
    expect((await get(parent.id)).state).toBe(TaskState.TASK_STATE_PENDING);
    const [again] = await claim("boss", 1);
    await start(again!);
    const released = await park(again!, [p!.id]);
    expect([TaskState[released.task!.state], TransitionKind[released.transition!.kind]]).toEqual(["TASK_STATE_PENDING", "TRANSITION_KIND_RELEASED"]);
    const [third] = await claim("boss", 1);
    await start(third!);
    expect((await failure(park(third!, [uuidv7()]))).code).toBe(Code.INVALID_ARGUMENT);
    await succeed(third!);
    for (const kid of await claim("kid")) await succeed(kid);
  });

  it("a parent cancelled while it waits cancels its unfinished children, and theirs", async () => {
    const parent = await runningParent();
    const [kid] = (await spawn(parent, ["k"])).children;
    await park(parent, [kid!.id]);
    const [running] = await claim("kid");
    await start(running!);
    const grandchild = (await spawn(running!, ["g"])).children[0]!;
    await h.client.cancelTask({ taskId: parent.id, reason: "stop", actor: "carol", expectedSequence: undefined });
    expect(TaskState[(await get(kid!.id)).state]).toBe("TASK_STATE_CANCELLED");
    expect(TaskState[(await get(grandchild.id)).state]).toBe("TASK_STATE_CANCELLED");
    const why = (await h.client.getTaskHistory({ taskId: grandchild.id, afterSequence: undefined, pageSize: 0, pageToken: "" })).transitions.at(-1)!;
    expect([why.actor, why.reason]).toEqual(["ledger", "BIZ_PARENT_ENDED: its parent ended CANCELLED"]);
  });

  it("a child ending while its parent parks: the park waits for it, counts it ended, and releases the parent at once", async () => {
    const parent = await runningParent();
    const [kid] = (await spawn(parent, ["late"])).children;
    const [running] = await claim("kid");
    const client = await h.sql.connect();
    try {
      await client.query("BEGIN");
      await client.query(`UPDATE ledger.tasks SET state = 'SUCCEEDED', output = '{}', finished_at = now(), updated_at = now(), started_at = now(), attempts = 1,
        lease_id = NULL, lease_worker_id = NULL, lease_acquired_at = NULL, lease_expires_at = NULL, next_attempt_at = NULL, sequence = sequence + 2 WHERE id = $1`, [running!.id]);
      const parking = park(parent, [kid!.id]); // blocks on the parent, which the child's trigger locked
      await new Promise((r) => setTimeout(r, 300));
      await client.query("COMMIT");
      const outcome = await parking;
      expect([TaskState[outcome.task!.state], TransitionKind[outcome.transition!.kind]]).toEqual(["TASK_STATE_PENDING", "TRANSITION_KIND_RELEASED"]);
    } finally {
      client.release();
    }
  });
});
