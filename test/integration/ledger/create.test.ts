import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TaskState, TransitionKind } from "@taskmesh/contracts/gen/taskmesh/task/v1/task";
import { Code } from "@taskmesh/kit";
import { uuidv7 } from "@taskmesh/ledger-service";
import { connectWorker, createRequest, eventsOf, failure, hashOf, seconds, startLedger, type LedgerHarness } from "./support.js";

describe("ledger: CreateTask idempotency and validation", () => {
  let h: LedgerHarness;
  const count = async () => Number((await h.sql.query<{ n: string }>("SELECT count(*) AS n FROM ledger.tasks")).rows[0]!.n);

  beforeAll(async () => { h = await startLedger("ledger_create"); });
  afterAll(async () => { await h?.stop(); });

  it("stores a PENDING task with its SUBMITTED history row, which is its submitted event", async () => {
    const req = createRequest({ labels: { team: "a" }, priority: 3 });
    const { task, created } = await h.client.createTask(req);
    expect(created).toBe(true);
    expect(task).toMatchObject({ id: req.id, state: TaskState.TASK_STATE_PENDING, sequence: 1n, attempts: 0, maxAttempts: 3, priority: 3, input: { text: "hello" }, labels: { team: "a" }, traceId: req.traceId, createdBy: "alice" });
    expect(task!.nextAttemptAt).toBeInstanceOf(Date);
    const history = await h.client.getTaskHistory({ taskId: req.id, pageSize: 0, pageToken: "" });
    expect(history.transitions.map((t) => [t.sequence, t.kind, t.toState])).toEqual([[1n, TransitionKind.TRANSITION_KIND_SUBMITTED, TaskState.TASK_STATE_PENDING]]);
    const events = await eventsOf(h.sql, [req.id]);
    expect(events.map((r) => [r.type, r.sequence])).toEqual([["taskmesh.task.v1.submitted", "1"]]);
    const { event } = events[0]!;
    expect(event).toMatchObject({ type: "taskmesh.task.v1.submitted", subject: req.id, sequence: 1n, traceId: req.traceId, source: "//taskmesh.dev/ledger" });
    expect(event.change?.$case).toBe("transition");
    // The submitted event carries the input, and what the task is.
    expect(event.task).toMatchObject({ id: req.id, capability: req.capability, state: TaskState.TASK_STATE_PENDING, attempts: 0, maxAttempts: 3, priority: 3,
      input: { text: "hello" }, labels: { team: "a" }, createdBy: "alice", createdAt: task!.createdAt, nextAttemptAt: task!.nextAttemptAt, sequence: 1n });
    expect(events[0]!.traceparent).toBe(req.traceparent);
    expect((await h.client.getTask({ id: req.id, view: 0 })).task?.input).toEqual({ text: "hello" });
  });

  it("returns the same task with created=false for the same key and request hash", async () => {
    const first = await h.client.createTask(createRequest({ idempotencyKey: "k-same" }));
    const again = await h.client.createTask(createRequest({ idempotencyKey: "k-same" }));
    expect(again.created).toBe(false);
    expect(again.task!.id).toBe(first.task!.id);
    const sameId = await h.client.createTask(createRequest({ id: first.task!.id }));
    expect(sameId).toMatchObject({ created: false, task: { id: first.task!.id } });
  });

  it("scopes keys to the submitter", async () => {
    const a = await h.client.createTask(createRequest({ idempotencyKey: "k-scoped", createdBy: "alice" }));
    const b = await h.client.createTask(createRequest({ idempotencyKey: "k-scoped", createdBy: "bob" }));
    expect(b.created).toBe(true);
    expect(b.task!.id).not.toBe(a.task!.id);
  });

  it("refuses a key or an id reused by a different request with ALREADY_EXISTS naming the task", async () => {
    const first = await h.client.createTask(createRequest({ idempotencyKey: "k-reused" }));
    const other = createRequest({ idempotencyKey: "k-reused", input: { text: "different" } });
    const e = await failure(h.client.createTask(other));
    expect(e).toMatchObject({ code: Code.ALREADY_EXISTS, reason: "RES_IDEMPOTENCY_KEY_REUSED", metadata: { task_id: first.task!.id } });
    const byId = await failure(h.client.createTask(createRequest({ id: first.task!.id, requestHash: hashOf("other") })));
    expect(byId).toMatchObject({ code: Code.ALREADY_EXISTS, reason: "RES_TASK_ID_REUSED", metadata: { task_id: first.task!.id } });
  });

  it("creates exactly one task per key under 200 concurrent creates with 100 keys", async () => {
    const before = await count();
    const results = await Promise.all(Array.from({ length: 200 }, (_, i) => h.client.createTask(createRequest({ idempotencyKey: `burst-${i % 100}` }))));
    expect(await count()).toBe(before + 100);
    expect(results.filter((r) => r.created)).toHaveLength(100);
    const byKey = new Map<string, Set<string>>();
    for (const r of results) byKey.set(r.task!.idempotencyKey, (byKey.get(r.task!.idempotencyKey) ?? new Set()).add(r.task!.id));
    expect([...byKey.values()].every((ids) => ids.size === 1)).toBe(true);
  });

  it("answers bad input with INVALID_ARGUMENT and field violations, storing nothing", async () => {
    const before = await count();
    const history = Number((await h.sql.query<{ n: string }>("SELECT count(*) AS n FROM ledger.history")).rows[0]!.n);
    const cases: Array<[Parameters<typeof createRequest>[0], string, string]> = [
      [{ id: "not-a-uuid" }, "id", "VAL_INVALID_TASK_ID"],
      [{ capability: "Bad Cap" }, "capability", "VAL_INVALID_ARGUMENT"],
      [{ input: { blob: "x".repeat(257 * 1024) } }, "input", "VAL_INPUT_TOO_LARGE"],
      [{ maxAttempts: 0 }, "max_attempts", "VAL_INVALID_ARGUMENT"],
      [{ maxAttempts: 101 }, "max_attempts", "VAL_INVALID_ARGUMENT"],
      [{ timeout: { seconds: 0n, nanos: 0 } }, "timeout", "VAL_INVALID_ARGUMENT"],
      [{ priority: 10 }, "priority", "VAL_INVALID_ARGUMENT"],
      [{ requestHash: "nope" }, "request_hash", "VAL_INVALID_ARGUMENT"],
      [{ labels: { "BAD KEY": "v" } }, "labels[BAD KEY]", "VAL_INVALID_ARGUMENT"],
      [{ traceId: "xyz" }, "trace_id", "VAL_INVALID_ARGUMENT"],
    ];
    for (const [overrides, field, reason] of cases) {
      const e = await failure(h.client.createTask(createRequest(overrides)));
      expect(e, field).toMatchObject({ code: Code.INVALID_ARGUMENT, reason });
      expect(e.violations.map((v) => v.field), field).toEqual([field]);
    }
    const many = await failure(h.client.createTask(createRequest({ maxAttempts: 500, priority: -1 })));
    expect(many.violations.map((v) => v.field)).toEqual(expect.arrayContaining(["max_attempts", "priority"]));
    expect(await failure(h.client.getTask({ id: "x", view: 0 }))).toMatchObject({ code: Code.INVALID_ARGUMENT, reason: "VAL_INVALID_TASK_ID" });
    expect(await failure(h.client.getTask({ id: uuidv7(), view: 0 }))).toMatchObject({ code: Code.NOT_FOUND, reason: "RES_TASK_NOT_FOUND" });
    expect(await failure(h.client.getTask({ id: uuidv7(), view: 7 as never }))).toMatchObject({ code: Code.INVALID_ARGUMENT });
    expect(await count()).toBe(before);
    expect(Number((await h.sql.query<{ n: string }>("SELECT count(*) AS n FROM ledger.history")).rows[0]!.n)).toBe(history);
  });

  it("with lease_to_worker_id (sync match) creates the task already leased to that CONNECTED worker, which no claim can take; an unknown worker gets no lease", async () => {
    await connectWorker(h.client, "w-sync", ["syncmatch"]);
    const one = createRequest({ capability: "syncmatch", leaseToWorkerId: "w-sync", leaseDuration: seconds(30) });
    const { task, created } = await h.client.createTask(one);
    expect(created).toBe(true);
    expect(task).toMatchObject({ state: TaskState.TASK_STATE_PENDING, sequence: 1n, attempts: 0, lease: { taskId: one.id, workerId: "w-sync", attempt: 1 } });
    const { rows } = await h.sql.query<{ acquired: boolean; expires_in: string }>(
      "SELECT lease_acquired_at = created_at AS acquired, EXTRACT(EPOCH FROM lease_expires_at - created_at)::text AS expires_in FROM ledger.tasks WHERE id = $1", [one.id]);
    expect(rows[0]).toEqual({ acquired: true, expires_in: "30.000000" });
    // The batch path leases the same way, per item; a worker that is not CONNECTED leaves its item unleased.
    const many = await h.client.createTasks({ tasks: [
      createRequest({ capability: "syncmatch", leaseToWorkerId: "w-sync", leaseDuration: seconds(30) }),
      createRequest({ capability: "syncmatch", leaseToWorkerId: "w-nobody", leaseDuration: seconds(30) }),
      createRequest({ capability: "syncmatch" }),
    ] });
    const tasks = many.results.map((r) => (r.result?.$case === "response" ? r.result.value.task! : undefined));
    expect(tasks.map((t) => t?.lease?.workerId)).toEqual(["w-sync", undefined, undefined]);
    // A claim finds only the two unleased tasks: the leased ones are the worker's already.
    const { tasks: claimed } = await h.client.assignTasks({ capability: "syncmatch", workerIds: ["w-sync", "w-sync", "w-sync", "w-sync"], leaseDuration: seconds(30) });
    expect(claimed.map((t) => t.id).sort()).toEqual([tasks[1]!.id, tasks[2]!.id].sort());
    // The leased task runs under its lease like an assigned one.
    const started = await h.client.startTask({ taskId: one.id, leaseId: task!.lease!.leaseId, expectedSequence: undefined, leaseDuration: seconds(30) });
    expect(started.task).toMatchObject({ state: TaskState.TASK_STATE_RUNNING, attempts: 1, workerId: "w-sync" });
  });

  it("refuses a lease_duration without lease_to_worker_id, and lease_to_worker_id without a duration in 1s..10m, storing nothing", async () => {
    const before = await count();
    for (const [label, overrides, field] of [
      ["a duration alone", { leaseDuration: seconds(30) }, "lease_duration"],
      ["a worker alone", { leaseToWorkerId: "w-sync" }, "lease_duration"],
      ["an hour's lease", { leaseToWorkerId: "w-sync", leaseDuration: seconds(3600) }, "lease_duration"],
    ] as const) {
      const e = await failure(h.client.createTask(createRequest(overrides)));
      expect(e, label).toMatchObject({ code: Code.INVALID_ARGUMENT, reason: "VAL_INVALID_ARGUMENT" });
      expect(e.violations.map((v) => v.field)).toEqual([field]);
    }
    expect(await count()).toBe(before);
  });
});
