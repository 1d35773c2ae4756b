import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TaskState, TransitionKind } from "@taskmesh/contracts/gen/taskmesh/task/v1/task";
import { Code } from "@taskmesh/kit";
import { uuidv7 } from "@taskmesh/ledger-service";
import { connectWorker, createRequest, eventsOf, failure, seconds, startLedger, type LedgerHarness } from "./support.js";

const K = TransitionKind;
const S = TaskState;

describe("ledger: task lifecycle, history, outbox and the database's state machine", () => {
  let h: LedgerHarness;

  beforeAll(async () => {
    h = await startLedger("ledger_lifecycle");
    await connectWorker(h.client, "w-life", ["echo", "flaky", "slow", "cancel", "other"]);
  });
  afterAll(async () => { await h?.stop(); });

  /** Creates a task of a capability of its own and claims it; returns its id and lease. */
  async function claimed(capability: string, overrides: Parameters<typeof createRequest>[0] = {}) {
    const { task } = await h.client.createTask(createRequest({ capability, ...overrides }));
    const { tasks } = await h.client.claimTasks({ workerId: "w-life", capabilities: [{ capability, maxTasks: 1 }], maxTasks: 1, leaseDuration: seconds(30) });
    expect(tasks.map((t) => t.id)).toEqual([task!.id]);
    return { id: task!.id, leaseId: tasks[0]!.lease!.leaseId };
  }

  it("runs claim → start → progress → complete with history 1..n and one outbox event per change, in order", async () => {
    const { id, leaseId } = await claimed("echo");
    const started = await h.client.startTask({ taskId: id, leaseId, expectedSequence: 1n, leaseDuration: undefined });
    expect(started.task).toMatchObject({ state: S.TASK_STATE_RUNNING, attempts: 1, workerId: "w-life", sequence: 2n });
    expect(started.transition).toMatchObject({ kind: K.TRANSITION_KIND_STARTED, sequence: 2n, attempt: 1, leaseId, actor: "w-life" });
    const progress = await h.client.recordProgress({ taskId: id, leaseId, progress: { percent: 50, message: "half", details: undefined, attempt: 0, reportedAt: undefined } });
    expect(progress.update).toMatchObject({ taskId: id, sequence: 2n, progress: { percent: 50, message: "half", attempt: 1 } });
    const done = await h.client.completeTask({ taskId: id, leaseId, output: { text: "hello" }, expectedSequence: 2n });
    expect(done.task).toMatchObject({ state: S.TASK_STATE_SUCCEEDED, output: { text: "hello" }, sequence: 3n, lease: undefined });
    expect(done.task!.finishedAt).toBeInstanceOf(Date);
    // Repeating a transition that took effect under the same lease returns the recorded outcome.
    const again = await h.client.completeTask({ taskId: id, leaseId, output: { text: "hello" }, expectedSequence: undefined });
    expect(again.transition).toEqual(done.transition);

    const history = await h.client.getTaskHistory({ taskId: id, pageSize: 0, pageToken: "" });
    expect(history.sequence).toBe(3n);
    expect(history.transitions.map((t) => [t.sequence, t.kind, t.fromState, t.toState])).toEqual([
      [1n, K.TRANSITION_KIND_SUBMITTED, S.TASK_STATE_UNSPECIFIED, S.TASK_STATE_PENDING],
      [2n, K.TRANSITION_KIND_STARTED, S.TASK_STATE_PENDING, S.TASK_STATE_RUNNING],
      [3n, K.TRANSITION_KIND_SUCCEEDED, S.TASK_STATE_RUNNING, S.TASK_STATE_SUCCEEDED],
    ]);
    const written = await eventsOf(h.sql, [id]);
    expect(written.map((r) => [r.type, r.sequence])).toEqual([
      ["taskmesh.task.v1.submitted", "1"], ["taskmesh.task.v1.started", "2"], ["taskmesh.task.v1.progressed", "2"], ["taskmesh.task.v1.succeeded", "3"],
    ]);
    const events = written.map((r) => r.event);
    expect(new Set(events.map((e) => e.id)).size).toBe(4);
    expect(events[2]!.change?.$case).toBe("progress");
    expect(events[1]!.task).toMatchObject({ state: S.TASK_STATE_RUNNING, attempts: 1, workerId: "w-life", startedAt: started.task!.startedAt, input: undefined });
    expect(events[3]!.task).toMatchObject({ state: S.TASK_STATE_SUCCEEDED, output: { text: "hello" }, finishedAt: done.task!.finishedAt, attempts: 1 });
  });

  it("refuses a lost lease, a stale sequence and a finished task", async () => {
    const { id, leaseId } = await claimed("echo");
    expect(await failure(h.client.startTask({ taskId: id, leaseId: uuidv7(), expectedSequence: undefined, leaseDuration: undefined }))).toMatchObject({ code: Code.ABORTED, reason: "RES_LEASE_LOST" });
    expect(await failure(h.client.startTask({ taskId: id, leaseId, expectedSequence: 5n, leaseDuration: undefined }))).toMatchObject({ code: Code.ABORTED, reason: "RES_SEQUENCE_MISMATCH", metadata: { actual_sequence: "1" } });
    expect(await failure(h.client.recordProgress({ taskId: id, leaseId, progress: { message: "x", attempt: 0, details: undefined, reportedAt: undefined } }))).toMatchObject({ code: Code.FAILED_PRECONDITION, reason: "BIZ_TASK_NOT_RUNNING" });
    await h.client.completeTask({ taskId: id, leaseId, output: {}, expectedSequence: undefined }); // implicit start
    expect((await h.client.getTaskHistory({ taskId: id, pageSize: 0, pageToken: "" })).transitions.map((t) => t.kind)).toEqual([K.TRANSITION_KIND_SUBMITTED, K.TRANSITION_KIND_STARTED, K.TRANSITION_KIND_SUCCEEDED]);
    expect(await failure(h.client.cancelTask({ taskId: id, reason: "", actor: "alice", expectedSequence: undefined }))).toMatchObject({ code: Code.FAILED_PRECONDITION, reason: "BIZ_TASK_ALREADY_FINISHED", metadata: { state: "SUCCEEDED" } });
    expect(await failure(h.client.startTask({ taskId: uuidv7(), leaseId, expectedSequence: undefined, leaseDuration: undefined }))).toMatchObject({ code: Code.NOT_FOUND, reason: "RES_TASK_NOT_FOUND" });
  });

  it("retries a retryable failure after a backoff, counting attempts, then ends FAILED", async () => {
    const { id, leaseId } = await claimed("flaky", { maxAttempts: 2 });
    await h.client.startTask({ taskId: id, leaseId, expectedSequence: undefined, leaseDuration: undefined });
    const error = { reason: "BIZ_HANDLER_FAILED", message: "boom", retryable: true, details: undefined };
    const first = await h.client.failTask({ taskId: id, leaseId, error, expectedSequence: undefined });
    expect(first.willRetry).toBe(true);
    expect(first.task).toMatchObject({ state: S.TASK_STATE_PENDING, attempts: 1, lease: undefined, error: { reason: "BIZ_HANDLER_FAILED" } });
    expect(first.transition).toMatchObject({ kind: K.TRANSITION_KIND_RETRYING, attempt: 1 });
    const wait = first.task!.nextAttemptAt!.getTime() - first.transition!.at!.getTime();
    expect(wait).toBeGreaterThanOrEqual(1000); // initial backoff 1s, plus up to 10% jitter
    expect(wait).toBeLessThanOrEqual(1100);
    // Not dispatchable while backing off.
    expect((await h.client.claimTasks({ workerId: "w-life", capabilities: [{ capability: "flaky", maxTasks: 1 }], maxTasks: 1, leaseDuration: seconds(30) })).tasks).toEqual([]);
    await h.sql.query("UPDATE ledger.tasks SET next_attempt_at = now() WHERE id = $1", [id]);
    const second = (await h.client.claimTasks({ workerId: "w-life", capabilities: [{ capability: "flaky", maxTasks: 1 }], maxTasks: 1, leaseDuration: seconds(30) })).tasks[0]!;
    expect(second.lease!.attempt).toBe(2);
    const last = await h.client.failTask({ taskId: id, leaseId: second.lease!.leaseId, error, expectedSequence: undefined });
    expect(last.willRetry).toBe(false);
    expect(last.task).toMatchObject({ state: S.TASK_STATE_FAILED, attempts: 2 });
    expect(last.transition!.kind).toBe(K.TRANSITION_KIND_FAILED);
  });

  it("ends a non-retryable failure at once, normalizing a malformed reason", async () => {
    const { id, leaseId } = await claimed("flaky", { maxAttempts: 5 });
    const r = await h.client.failTask({ taskId: id, leaseId, error: { reason: "oops", message: "bad", retryable: false, details: undefined }, expectedSequence: undefined });
    expect(r).toMatchObject({ willRetry: false, task: { state: S.TASK_STATE_FAILED, attempts: 1, error: { reason: "BIZ_HANDLER_FAILED" } } });
  });

  it("ReapTimeouts retries a timed-out attempt, and ends the last one TIMED_OUT", async () => {
    const { id, leaseId } = await claimed("slow", { maxAttempts: 2 });
    await h.client.startTask({ taskId: id, leaseId, expectedSequence: undefined, leaseDuration: undefined });
    await h.sql.query("UPDATE ledger.tasks SET started_at = now() - interval '2 minutes' WHERE id = $1", [id]);
    const first = await h.client.reapTimeouts({ limit: 0 });
    expect(first.reclaimed.map((r) => [r.task!.id, r.transition!.kind, r.endedLease!.leaseId])).toEqual([[id, K.TRANSITION_KIND_RETRYING, leaseId]]);
    expect(first.reclaimed[0]!.transition).toMatchObject({ actor: "ledger", error: { reason: "BIZ_ATTEMPT_TIMED_OUT", retryable: true } });
    await h.sql.query("UPDATE ledger.tasks SET next_attempt_at = now() WHERE id = $1", [id]);
    const again = (await h.client.claimTasks({ workerId: "w-life", capabilities: [{ capability: "slow", maxTasks: 1 }], maxTasks: 1, leaseDuration: seconds(30) })).tasks[0]!;
    await h.client.startTask({ taskId: id, leaseId: again.lease!.leaseId, expectedSequence: undefined, leaseDuration: undefined });
    await h.sql.query("UPDATE ledger.tasks SET started_at = now() - interval '2 minutes' WHERE id = $1", [id]);
    const last = await h.client.reapTimeouts({ limit: 10 });
    expect(last.reclaimed[0]!.task).toMatchObject({ id, state: S.TASK_STATE_TIMED_OUT, attempts: 2 });
    expect(last.more).toBe(false);
    expect(await failure(h.client.reapTimeouts({ limit: 5000 }))).toMatchObject({ code: Code.INVALID_ARGUMENT, reason: "VAL_INVALID_LIMIT" });
  });

  it("cancels a PENDING and a RUNNING task (returning the lease), and a second cancel changes nothing", async () => {
    const { task: pending } = await h.client.createTask(createRequest({ capability: "never" }));
    const p = await h.client.cancelTask({ taskId: pending!.id, reason: "no longer needed", actor: "alice", expectedSequence: 1n });
    expect(p).toMatchObject({ alreadyCancelled: false, endedLease: undefined, task: { state: S.TASK_STATE_CANCELLED }, transition: { kind: K.TRANSITION_KIND_CANCELLED, reason: "no longer needed", actor: "alice" } });
    const { id, leaseId } = await claimed("cancel");
    await h.client.startTask({ taskId: id, leaseId, expectedSequence: undefined, leaseDuration: undefined });
    const r = await h.client.cancelTask({ taskId: id, reason: "", actor: "bob", expectedSequence: undefined });
    expect(r).toMatchObject({ task: { state: S.TASK_STATE_CANCELLED, lease: undefined }, endedLease: { leaseId, workerId: "w-life" } });
    const twice = await h.client.cancelTask({ taskId: id, reason: "", actor: "bob", expectedSequence: undefined });
    expect(twice).toMatchObject({ alreadyCancelled: true, transition: undefined });
    expect(await failure(h.client.completeTask({ taskId: id, leaseId, output: {}, expectedSequence: undefined }))).toMatchObject({ code: Code.FAILED_PRECONDITION, reason: "BIZ_TASK_ALREADY_FINISHED" });
    expect(await failure(h.client.cancelTask({ taskId: id, reason: "x".repeat(300), actor: "", expectedSequence: undefined }))).toMatchObject({ code: Code.INVALID_ARGUMENT, reason: "VAL_REASON_TOO_LONG" });
  });

  it("releases a running task without counting the attempt", async () => {
    const { id, leaseId } = await claimed("other");
    await h.client.startTask({ taskId: id, leaseId, expectedSequence: undefined, leaseDuration: undefined });
    const r = await h.client.releaseTask({ taskId: id, leaseId, reason: "worker draining", expectedSequence: undefined });
    expect(r).toMatchObject({ task: { state: S.TASK_STATE_PENDING, attempts: 0, lease: undefined }, transition: { kind: K.TRANSITION_KIND_RELEASED } });
    const { leaseId: second } = { leaseId: (await h.client.claimTasks({ workerId: "w-life", capabilities: [{ capability: "other", maxTasks: 1 }], maxTasks: 1, leaseDuration: seconds(30) })).tasks[0]!.lease!.leaseId };
    const unstarted = await h.client.releaseTask({ taskId: id, leaseId: second, reason: "", expectedSequence: undefined });
    expect(unstarted).toMatchObject({ transition: undefined, task: { state: S.TASK_STATE_PENDING, lease: undefined, sequence: 3n } });
  });

  it("refuses illegal changes in the database itself", async () => {
    const { id, leaseId } = await claimed("echo");
    await h.client.completeTask({ taskId: id, leaseId, output: { ok: true }, expectedSequence: undefined });
    await expect(h.sql.query("UPDATE ledger.tasks SET state = 'RUNNING', finished_at = NULL, output = NULL, sequence = sequence + 1 WHERE id = $1", [id])).rejects.toThrow(/finished|illegal/);
    const { task } = await h.client.createTask(createRequest({ capability: "never" }));
    await expect(h.sql.query("UPDATE ledger.tasks SET state = 'SUCCEEDED', output = '{}', finished_at = now(), next_attempt_at = NULL, sequence = 2 WHERE id = $1", [task!.id])).rejects.toThrow(/illegal task transition/);
    await expect(h.sql.query("UPDATE ledger.tasks SET state = 'RUNNING', next_attempt_at = NULL, sequence = 2 WHERE id = $1", [task!.id])).rejects.toThrow(/check constraint/);
    await expect(h.sql.query("UPDATE ledger.tasks SET priority = 5, sequence = 7 WHERE id = $1", [task!.id])).rejects.toThrow(/sequence/);
    // A claimed task may start and succeed in one write, but only as two steps of its sequence.
    const { id: leased } = await claimed("one-write");
    await expect(h.sql.query(`UPDATE ledger.tasks SET state = 'SUCCEEDED', output = '{}', finished_at = now(), started_at = now(), next_attempt_at = NULL,
      attempts = attempts + 1, lease_id = NULL, lease_worker_id = NULL, lease_acquired_at = NULL, lease_expires_at = NULL, sequence = sequence + 1 WHERE id = $1`, [leased]))
      .rejects.toThrow(/two steps/);
    await expect(h.sql.query("DELETE FROM ledger.history WHERE task_id = $1", [task!.id])).rejects.toThrow(/append-only/);
    await expect(h.sql.query("UPDATE ledger.history SET reason = 'x' WHERE task_id = $1", [task!.id])).rejects.toThrow(/append-only/);
  });
});
