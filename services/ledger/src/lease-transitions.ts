import type pg from "pg";
import { TaskView, type TaskProgressUpdate, type TaskTransition } from "@taskmesh/contracts/gen/taskmesh/task/v1/task";
import { invalidArgument } from "@taskmesh/kit";
import { alreadyFinished, leaseLost, notRunning, sequenceMismatch, taskNotFound } from "./errors.js";
import { uuidv7 } from "./ids.js";
import { eventType, isFinished, toTask, toTransition } from "./records.js";
import { historySql, type HistoryRow, type KindName } from "./sql/history.js";
import { childSql, taskSql, type StoredError, type StoredProgress, type TaskRow } from "./sql/tasks.js";
import { TaskReads } from "./task-reads.js";
import { completeAttempt, failAttempt, parkTask, releaseTask, startAttempt, withoutLease } from "./transitions.js";
import type { NewTask } from "./validation.js";
import { EVENT_SOURCE, commitTransition, dbNow, historyColumns, saveTask, writeEvent, type Committed } from "./writer.js";

/** A worker-side call: which task, under which lease, at which sequence. */
export interface LeaseCall {
  readonly taskId: string;
  readonly leaseId: string;
  readonly expectedSequence?: bigint | undefined;
}

type Signal = AbortSignal | undefined;

/**
 * True when nothing of `kinds` can have happened under `leaseId` yet, so a
 * call needs no look for a replay in the history: the task still holds that
 * lease and is PENDING (nothing happened under it), or RUNNING when the
 * kinds exclude STARTED (a completion, failure or release would have ended
 * the lease or the task).
 */
export function untouched(row: TaskRow, leaseId: string, kinds: readonly KindName[]): boolean {
  return row.lease_id === leaseId && (row.state === "PENDING" || (row.state === "RUNNING" && !kinds.includes("STARTED")));
}

/**
 * The worker-side transitions of a task on Postgres (start, progress,
 * complete, fail, release), each under the lease the worker holds.
 */
export class LeaseTransitions extends TaskReads {
  /** Called before any lease transition of `taskId`: a store remembering rows drops its copy, which is about to be stale. */
  protected forgetRow(_taskId: string): void {}

  /**
   * Runs a worker-side transition on the locked task: a call that already
   * took effect under the same lease replays its recorded outcome; then a
   * finished task, another lease or another sequence are refused.
   */
  private leased<T>(call: LeaseCall, replayKinds: KindName[], signal: Signal,
    work: (client: pg.PoolClient, now: Date, row: TaskRow) => Promise<T>,
    replay: (row: TaskRow, done: HistoryRow) => T): Promise<T> {
    this.forgetRow(call.taskId);
    return this.tx(async (client) => {
      const now = await dbNow(client);
      const row = (await client.query<TaskRow>(taskSql.getForUpdate, [call.taskId])).rows[0];
      if (!row) throw taskNotFound(call.taskId);
      if (replayKinds.length > 0 && !untouched(row, call.leaseId, replayKinds)) {
        const done = (await client.query<HistoryRow>(historySql.byLease, [call.taskId, call.leaseId, replayKinds])).rows[0];
        if (done) return replay(row, done);
      }
      if (isFinished(row.state)) throw alreadyFinished(row.id, row.state);
      if (row.lease_id !== call.leaseId) throw leaseLost(row.id, call.leaseId);
      if (call.expectedSequence !== undefined && BigInt(row.sequence) !== call.expectedSequence) throw sequenceMismatch(row.id, call.expectedSequence, row.sequence);
      return work(client, now, row);
    }, signal);
  }

  /** PENDING → RUNNING under the caller's lease. */
  async start(call: LeaseCall, leaseMs: number | undefined, signal?: AbortSignal): Promise<Committed> {
    return this.leased(call, ["STARTED"], signal, async (client, now, row) => {
      const step = startAttempt(row, now, leaseMs);
      return commitTransition(client, now, row, step.next, step.change);
    }, (row, done) => ({ row, transition: toTransition(done) }));
  }

  /** Stores a running attempt's latest progress and publishes it. */
  async progress(call: LeaseCall, report: Omit<StoredProgress, "attempt" | "reported_at">, signal?: AbortSignal): Promise<TaskProgressUpdate> {
    return this.leased(call, [], signal, async (client, now, row) => {
      if (row.state !== "RUNNING") throw notRunning(row.id, row.state);
      const progress: StoredProgress = { ...report, attempt: row.attempts, reported_at: now.toISOString() };
      const saved = await saveTask(client, { ...row, progress, updated_at: now });
      const task = toTask(saved, TaskView.TASK_VIEW_BASIC);
      const update: TaskProgressUpdate = {
        taskId: row.id, sequence: BigInt(row.sequence), workerId: row.worker_id, progress: toTask(saved).progress, traceId: row.trace_id,
      };
      await writeEvent(client, {
        id: uuidv7(), type: eventType("PROGRESSED"), source: EVENT_SOURCE, subject: row.id, time: now, sequence: BigInt(row.sequence),
        task, change: { $case: "progress", value: { ...update, progress: task.progress } }, traceId: row.trace_id,
      }, row.traceparent);
      return update;
    }, () => { throw new Error("unreachable"); });
  }

  /** Starts the attempt implicitly when the task is still only claimed. */
  private async ensureStarted(client: pg.PoolClient, now: Date, row: TaskRow): Promise<TaskRow> {
    if (row.state !== "PENDING") return row;
    const step = startAttempt(row, now);
    return (await commitTransition(client, now, row, step.next, step.change)).row;
  }

  /** RUNNING → SUCCEEDED (starting it implicitly first when only claimed). */
  async complete(call: LeaseCall, output: Record<string, unknown>, signal?: AbortSignal): Promise<Committed> {
    return this.leased(call, ["SUCCEEDED"], signal, async (client, now, row) => {
      const running = await this.ensureStarted(client, now, row);
      const step = completeAttempt(running, now, output);
      return commitTransition(client, now, running, step.next, step.change);
    }, (row, done) => ({ row, transition: toTransition(done) }));
  }

  /** A failed attempt: retried after a backoff, or the end (FAILED / TIMED_OUT). */
  async fail(call: LeaseCall, error: StoredError, signal?: AbortSignal): Promise<Committed & { willRetry: boolean }> {
    return this.leased(call, ["RETRYING", "FAILED", "TIMED_OUT"], signal, async (client, now, row) => {
      const running = await this.ensureStarted(client, now, row);
      const step = failAttempt(running, now, error, running.worker_id);
      return { ...(await commitTransition(client, now, running, step.next, step.change)), willRetry: step.willRetry };
    }, (row, done) => ({ row, transition: toTransition(done), willRetry: done.kind === "RETRYING" }));
  }

  /**
   * Parks a running task until the children it names have ended (all, or
   * the first with `any`): RUNNING → WAITING (PARKED) with an 'awaits' edge
   * from each unfinished one, so the transaction that ends the last (or
   * first) makes it PENDING again (READY, migration 0013). When none is
   * left to wait for, it goes back to PENDING at once (RELEASED). A claimed
   * task is started first.
   */
  async park(call: LeaseCall, children: readonly string[], any: boolean, signal?: AbortSignal): Promise<Committed> {
    return this.leased(call, ["PARKED", "RELEASED"], signal, async (client, now, row) => {
      const running = await this.ensureStarted(client, now, row);
      const { rows: found } = await client.query<{ id: string; state: TaskRow["state"] }>(childSql.states, [row.id, [...new Set(children)]]);
      const strangers = [...new Set(children)].filter((id) => !found.some((f) => f.id === id));
      if (strangers.length > 0) {
        throw invalidArgument([{ field: "children", description: `not children of task ${row.id}: ${strangers.slice(0, 5).join(", ")}` }]);
      }
      const open = found.filter((f) => !isFinished(f.state)).map((f) => f.id);
      const nothingLeft = any ? open.length < found.length : open.length === 0;
      if (nothingLeft) {
        const step = releaseTask(running, now, "the children it waits for had ended");
        return commitTransition(client, now, running, step.next, step.change);
      }
      await client.query(childSql.awaitEdges, [row.id, open]);
      const step = parkTask(running, now, any ? 1 : open.length);
      return commitTransition(client, now, running, step.next, step.change);
    }, (row, done) => ({ row, transition: toTransition(done) }));
  }

  /**
   * Creates children of a task its caller runs under `call`'s lease, each
   * keyed by (parent, step), with the parent's submitter and trace; a step
   * taken already answers that child as it is. In the request's order.
   */
  async spawn(call: LeaseCall, children: ReadonlyArray<{ step: string; task: NewTask & { id: string } }>, signal?: AbortSignal): Promise<Array<{ row: TaskRow; created: boolean }>> {
    return this.leased(call, [], signal, async (client, now, row) => {
      void now;
      if (row.state !== "RUNNING" && row.state !== "PENDING") throw notRunning(row.id, row.state);
      const col = <T>(pick: (c: (typeof children)[number]) => T): T[] => children.map(pick);
      const inserted = (await client.query<TaskRow>(childSql.insert, [
        row.id, col((c) => c.task.id), col((c) => c.task.capability), col((c) => JSON.stringify(c.task.input)), col((c) => c.task.maxAttempts),
        col((c) => c.task.requestHash), col((c) => c.task.priority), col((c) => JSON.stringify(c.task.labels)), col((c) => c.task.timeoutMs),
        col((c) => c.task.retryInitialMs), col((c) => c.task.retryMaxMs), col((c) => c.task.retryMultiplier), col((c) => c.step),
      ])).rows;
      if (inserted.length > 0) {
        await client.query(historySql.insertMany, historyColumns(inserted.map((r) => ({
          task_id: r.id, sequence: "1", kind: "SUBMITTED", from_state: "", to_state: "PENDING", attempt: 0, worker_id: "", lease_id: "", at: r.created_at,
          reason: "", error: null, trace_id: r.trace_id, next_attempt_at: null, actor: r.created_by,
        }))));
      }
      const created = new Set(inserted.map((r) => r.workflow_step));
      const found = (await client.query<TaskRow>(childSql.bySteps, [row.id, children.map((c) => c.step)])).rows;
      const byStep = new Map(found.map((r) => [r.workflow_step, r]));
      return children.map((c) => {
        const child = byStep.get(c.step);
        if (!child) throw new Error(`child ${c.step} of ${row.id} was neither inserted nor found`);
        return { row: child, created: created.has(c.step) };
      });
    }, () => {
      throw new Error("spawn has no replay");
    });
  }

  /** Hands a task back: a claimed one just loses its lease; a running one goes back to PENDING (RELEASED). */
  async release(call: LeaseCall, reason: string, signal?: AbortSignal): Promise<{ row: TaskRow; transition?: TaskTransition }> {
    return this.leased<{ row: TaskRow; transition?: TaskTransition }>(call, ["RELEASED"], signal, async (client, now, row) => {
      if (row.state === "PENDING") return { row: await saveTask(client, { ...withoutLease(row), updated_at: now }) };
      const step = releaseTask(row, now, reason);
      return commitTransition(client, now, row, step.next, step.change);
    }, (row, done) => ({ row, transition: toTransition(done) }));
  }
}
