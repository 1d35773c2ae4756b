import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CompleteTasksResponse, CreateTasksResponse } from "@taskmesh/contracts/gen/taskmesh/ledger/v1/ledger";
import { TaskState, TransitionKind, type Task } from "@taskmesh/contracts/gen/taskmesh/task/v1/task";
import { Code, fromRpcStatus } from "@taskmesh/kit";
import { LedgerStore, QueueStore } from "@taskmesh/ledger-service";
import { connectWorker, createRequest, eventsOf, failure, hashOf, seconds, startLedger, type LedgerHarness } from "./support.js";

type Item<R> = R extends { results: Array<infer I> } ? I : never;
const errorOf = (item: Item<CreateTasksResponse> | Item<CompleteTasksResponse>) => (item.result?.$case === "error" ? fromRpcStatus(item.result.value) : undefined);

describe("ledger: batches — CreateTasks and CompleteTasks answer each item as the single call would, in one transaction", () => {
  let h: LedgerHarness;
  // A transition's event is its history row (with its own event id); a progress report's, an outbox row.
  const counts = async () => (await h.sql.query<{ tasks: string; history: string; events: string }>(
    `SELECT (SELECT count(*) FROM ledger.tasks) AS tasks, (SELECT count(*) FROM ledger.history) AS history,
            (SELECT count(DISTINCT event_id) FROM ledger.history) + (SELECT count(*) FROM ledger.outbox) AS events`)).rows[0]!;

  beforeAll(async () => {
    h = await startLedger("ledger_batch");
    await connectWorker(h.client, "bw", ["batch"]);
  });
  afterAll(async () => { await h?.stop(); });

  it("creates new tasks, answers repeats and refusals item by item, and writes one history row and one event per new task", async () => {
    const existing = createRequest({ capability: "batch", idempotencyKey: "b-existing", createdBy: "bob" });
    const first = await h.client.createTask(existing);
    const before = await counts();
    const input = { n: 1 };
    const a = createRequest({ capability: "batch", input, idempotencyKey: "b-a", createdBy: "bob", requestHash: hashOf({ capability: "batch", input }) });
    const { results } = await h.client.createTasks({ tasks: [
      a,
      createRequest({ capability: "batch" }),
      createRequest({ capability: "Not a capability" }),
      { ...existing, id: createRequest().id },
      createRequest({ capability: "batch", idempotencyKey: "b-existing", createdBy: "bob", requestHash: "f".repeat(64) }),
      { ...a, id: createRequest().id },
    ] });
    expect(results.map((r) => (r.result?.$case === "response" ? `created=${r.result.value.created}` : `${Code[errorOf(r)!.code]}:${errorOf(r)!.reason}`))).toEqual([
      "created=true", "created=true", "INVALID_ARGUMENT:VAL_INVALID_ARGUMENT", "created=false", "ALREADY_EXISTS:RES_IDEMPOTENCY_KEY_REUSED", "created=false",
    ]);
    const task = (i: number) => (results[i]!.result?.$case === "response" ? results[i]!.result.value.task! : undefined);
    expect(task(3)!.id).toBe(first.task!.id);
    expect(task(5)!.id).toBe(task(0)!.id);
    expect(errorOf(results[2]!)!.violations.map((v) => v.field)).toEqual(["capability"]);
    const after = await counts();
    expect([Number(after.tasks) - Number(before.tasks), Number(after.history) - Number(before.history), Number(after.events) - Number(before.events)]).toEqual([2, 2, 2]);
    expect(await failure(h.client.createTasks({ tasks: [] }))).toMatchObject({ code: Code.INVALID_ARGUMENT });
  });

  it("answers each created task as it is stored (GetTask reads the same), leases a sync-matched one only to a CONNECTED worker, and takes a repeated id once", async () => {
    await h.client.markWorkerGone({ workerId: "gone-worker", sessionId: await connectWorker(h.client, "gone-worker", ["batch"]), reason: "test", expireLeases: false });
    const leaseTo = (workerId: string) => ({ leaseToWorkerId: workerId, leaseDuration: seconds(30) });
    const repeated = createRequest({ capability: "batch", labels: { team: "a" }, priority: 7 });
    const { results } = await h.client.createTasks({ tasks: [
      createRequest({ capability: "batch", input: { b: 2, a: [1, "x", { c: null }] } }),
      createRequest({ capability: "batch", ...leaseTo("bw") }),
      createRequest({ capability: "batch", ...leaseTo("gone-worker") }),
      repeated,
      repeated,
    ] });
    const tasks = results.map((r) => (r.result?.$case === "response" ? r.result.value : undefined));
    expect(tasks.map((t) => t?.created)).toEqual([true, true, true, true, false]);
    for (const answer of tasks.slice(0, 4)) {
      const stored = (await h.client.getTask({ id: answer!.task!.id, view: 0 })).task!;
      expect(answer!.task).toEqual(stored);
    }
    expect(tasks[1]!.task!.lease).toMatchObject({ workerId: "bw", attempt: 1 });
    expect(tasks[2]!.task!.lease).toBeUndefined();
    expect(tasks[4]!.task!.id).toBe(tasks[3]!.task!.id);
    // Each new task has its SUBMITTED row and event, the repeat none of its own; the event says what the task is.
    for (const answer of tasks.slice(0, 4)) {
      const { rows } = await h.sql.query<{ kind: string }>("SELECT kind FROM ledger.history WHERE task_id = $1", [answer!.task!.id]);
      expect(rows.map((r) => r.kind)).toEqual(["SUBMITTED"]);
      const events = await eventsOf(h.sql, [answer!.task!.id]);
      expect(events.map((e) => e.type)).toEqual(["taskmesh.task.v1.submitted"]);
      // Events carry no lease (task.proto, TaskEvent.task).
      expect(events[0]!.event.task).toMatchObject({ id: answer!.task!.id, state: TaskState.TASK_STATE_PENDING, createdAt: answer!.task!.createdAt, labels: answer!.task!.labels, lease: undefined });
    }
  });

  it("completes claimed and started tasks, starts the claimed ones on the way, replays repeats and refuses a lost lease", async () => {
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) ids.push((await h.client.createTask(createRequest({ capability: "batch" }))).task!.id);
    const claimed = (await h.client.claimTasks({ workerId: "bw", capabilities: [{ capability: "batch", maxTasks: 10 }], maxTasks: 10, leaseDuration: seconds(30) })).tasks
      .filter((t) => ids.includes(t.id));
    expect(claimed).toHaveLength(4);
    const [started, onlyClaimed, lostOne, doneEarlier] = claimed as [typeof claimed[0], typeof claimed[0], typeof claimed[0], typeof claimed[0]];
    await h.client.startTask({ taskId: started.id, leaseId: started.lease!.leaseId, expectedSequence: undefined, leaseDuration: undefined });
    const early = await h.client.completeTask({ taskId: doneEarlier.id, leaseId: doneEarlier.lease!.leaseId, output: { early: true }, expectedSequence: undefined });
    const item = (t: typeof started, leaseId = t.lease!.leaseId) => ({ taskId: t.id, leaseId, output: { id: t.id }, expectedSequence: undefined });
    const before = await counts();
    const { results } = await h.client.completeTasks({ tasks: [
      item(started), item(onlyClaimed), item(lostOne, createRequest().id), item(doneEarlier), item(started),
    ] });
    const kinds = results.map((r) => (r.result?.$case === "response" ? `${TransitionKind[r.result.value.transition!.kind]}@${r.result.value.transition!.sequence}` : errorOf(r)!.reason));
    expect(kinds).toEqual([
      "TRANSITION_KIND_SUCCEEDED@3", "TRANSITION_KIND_SUCCEEDED@3", "RES_LEASE_LOST", `TRANSITION_KIND_SUCCEEDED@${early.transition!.sequence}`, "TRANSITION_KIND_SUCCEEDED@3",
    ]);
    const after = await counts();
    // started: SUCCEEDED; onlyClaimed: STARTED + SUCCEEDED — three transitions, each with its event.
    expect([Number(after.history) - Number(before.history), Number(after.events) - Number(before.events)]).toEqual([3, 3]);
    const { rows } = await h.sql.query<{ kind: string; sequence: string }>("SELECT kind, sequence FROM ledger.history WHERE task_id = $1 ORDER BY sequence", [onlyClaimed.id]);
    expect(rows.map((r) => `${r.kind}@${r.sequence}`)).toEqual(["SUBMITTED@1", "STARTED@2", "SUCCEEDED@3"]);
    const final = (await h.client.getTask({ id: onlyClaimed.id, view: 0 })).task!;
    expect([final.state, final.attempts, final.output, final.lease]).toEqual([TaskState.TASK_STATE_SUCCEEDED, 1, { id: onlyClaimed.id }, undefined]);
    // Each transition has an event of its own, saying what the task became.
    const events = await eventsOf(h.sql, [onlyClaimed.id]);
    expect(events.map((e) => [e.type, e.event.task?.state, e.event.task?.attempts])).toEqual([
      ["taskmesh.task.v1.submitted", TaskState.TASK_STATE_PENDING, 0], ["taskmesh.task.v1.started", TaskState.TASK_STATE_RUNNING, 1],
      ["taskmesh.task.v1.succeeded", TaskState.TASK_STATE_SUCCEEDED, 1],
    ]);
    expect(new Set(events.map((e) => e.eventId)).size).toBe(3);
  });

  it("completes a task it leased (an assignment or a sync-matched create) from the row it remembers, and reads it again once the row changed", async () => {
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await h.client.createTask(createRequest({ capability: "fast" }))).task!.id);
    await connectWorker(h.client, "fw", ["fast"]);
    const assigned = (await h.client.assignTasks({ capability: "fast", workerIds: ["fw", "fw", "fw"], leaseDuration: seconds(30) })).tasks;
    expect(assigned.map((t) => t.id).sort()).toEqual([...ids].sort());
    const synced = (await h.client.createTasks({ tasks: [createRequest({ capability: "fast", leaseToWorkerId: "fw", leaseDuration: seconds(30) })] })).results[0]!;
    const leasedAtCreate = synced.result?.$case === "response" ? synced.result.value.task! : undefined;
    expect(leasedAtCreate?.lease?.workerId).toBe("fw");
    const [startedHere, changedElsewhere, ...untouchedOnes] = [...assigned, leasedAtCreate!] as Task[];
    expect([startedHere, changedElsewhere, ...untouchedOnes].every((t) => h.rows!.get(t!.id) !== undefined)).toBe(true);
    // One starts through this ledger (it forgets the row); another replica starts the other (the row this one remembers is stale).
    await h.client.startTask({ taskId: startedHere!.id, leaseId: startedHere!.lease!.leaseId, expectedSequence: undefined, leaseDuration: undefined });
    expect(h.rows!.get(startedHere!.id)).toBeUndefined();
    const elsewhere = await new LedgerStore(h.sql).start({ taskId: changedElsewhere!.id, leaseId: changedElsewhere!.lease!.leaseId, expectedSequence: undefined }, undefined);
    expect(h.rows!.get(changedElsewhere!.id)).toBeDefined();
    const item = (t: Task) => ({ taskId: t.id, leaseId: t.lease!.leaseId, output: { id: t.id }, expectedSequence: undefined });
    const before = await counts();
    const { results } = await h.client.completeTasks({ tasks: [...untouchedOnes, startedHere!, changedElsewhere!].map(item) });
    const kinds = results.map((r) => (r.result?.$case === "response" ? `${TransitionKind[r.result.value.transition!.kind]}@${r.result.value.transition!.sequence}` : errorOf(r)!.reason));
    expect(kinds).toEqual(Array(4).fill("TRANSITION_KIND_SUCCEEDED@3"));
    const after = await counts();
    // STARTED + SUCCEEDED for the two untouched ones, SUCCEEDED for the two started before: six transitions, each with its event.
    expect([Number(after.history) - Number(before.history), Number(after.events) - Number(before.events)]).toEqual([6, 6]);
    for (const t of [...untouchedOnes, startedHere!, changedElsewhere!]) {
      const { rows } = await h.sql.query<{ kind: string; sequence: string }>("SELECT kind, sequence FROM ledger.history WHERE task_id = $1 ORDER BY sequence", [t.id]);
      expect(rows.map((r) => `${r.kind}@${r.sequence}`)).toEqual(["SUBMITTED@1", "STARTED@2", "SUCCEEDED@3"]);
      const final = (await h.client.getTask({ id: t.id, view: 0 })).task!;
      expect([final.state, final.attempts, final.output, final.lease, final.sequence]).toEqual([TaskState.TASK_STATE_SUCCEEDED, 1, { id: t.id }, undefined, 3n]);
      expect(h.rows!.get(t.id)).toBeUndefined();
    }
    // What the other replica wrote stays: the completion read the row again instead of writing over it from the remembered one.
    expect((await h.client.getTask({ id: changedElsewhere!.id, view: 0 })).task!.startedAt).toEqual(elsewhere.row.started_at);
    // Events carry the task as it was after each step.
    const events = await eventsOf(h.sql, [untouchedOnes[0]!.id]);
    expect(events.map((e) => e.event).slice(-2).map((e) => [e.type, e.task?.state, e.sequence])).toEqual([
      ["taskmesh.task.v1.started", TaskState.TASK_STATE_RUNNING, 2n], ["taskmesh.task.v1.succeeded", TaskState.TASK_STATE_SUCCEEDED, 3n],
    ]);
  });

  it("refuses a completion under a lease another replica ended and gave to another worker since, though this one remembers the row under that lease", async () => {
    const id = (await h.client.createTask(createRequest({ capability: "fast-lost" }))).task!.id;
    await connectWorker(h.client, "fl", ["fast-lost"]);
    await connectWorker(h.client, "fl2", ["fast-lost"]);
    const [first] = (await h.client.assignTasks({ capability: "fast-lost", workerIds: ["fl"], leaseDuration: seconds(30) })).tasks;
    expect([first!.id, h.rows!.get(id)?.row.lease_id]).toEqual([id, first!.lease!.leaseId]);
    // Another replica: the lease is handed back and the task leased to another worker (neither moves its sequence).
    await new LedgerStore(h.sql).release({ taskId: id, leaseId: first!.lease!.leaseId, expectedSequence: undefined }, "handed back");
    const [second] = await new QueueStore(h.sql).assign("fast-lost", ["fl2"], 30_000);
    expect([second!.id, second!.sequence]).toEqual([id, "1"]);
    const { results } = await h.client.completeTasks({ tasks: [{ taskId: id, leaseId: first!.lease!.leaseId, output: { late: true }, expectedSequence: undefined }] });
    expect(results.map((r) => (r.result?.$case === "response" ? TransitionKind[r.result.value.transition!.kind] : errorOf(r)!.reason))).toEqual(["RES_LEASE_LOST"]);
    const task = (await h.client.getTask({ id, view: 0 })).task!;
    expect([task.state, task.lease?.leaseId, task.output]).toEqual([TaskState.TASK_STATE_PENDING, second!.lease_id, undefined]);
  });
});
