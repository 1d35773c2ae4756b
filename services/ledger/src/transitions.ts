import type { KindName } from "./sql/history.js";
import type { StoredError, TaskRow } from "./sql/tasks.js";

/** What a transition records beside the new row (its history row, also its event). */
export interface Change {
  readonly kind: KindName;
  readonly attempt: number;
  readonly workerId: string;
  readonly leaseId: string;
  readonly actor: string;
  readonly reason?: string;
  readonly error?: StoredError;
  readonly nextAttemptAt?: Date;
}

/** A row after a transition and the change to record. */
export interface Step {
  readonly next: TaskRow;
  readonly change: Change;
}

/** Reasons the ledger itself fails attempts with. */
export const LEDGER_REASONS = {
  timedOut: "BIZ_ATTEMPT_TIMED_OUT",
  leaseExpired: "SYS_LEASE_EXPIRED",
  workerLost: "SYS_WORKER_LOST",
} as const;

const addMs = (d: Date, ms: number): Date => new Date(d.getTime() + ms);

/**
 * The backoff before the attempt after `attempt` failed:
 * min(max, initial * multiplier^(attempt-1)) plus up to 10% jitter.
 */
export function backoffMs(row: Pick<TaskRow, "retry_initial_ms" | "retry_max_ms" | "retry_multiplier">, attempt: number, random = Math.random): number {
  const base = Math.min(row.retry_max_ms, row.retry_initial_ms * row.retry_multiplier ** Math.max(0, attempt - 1));
  return Math.round(base + base * 0.1 * random());
}

/** The row without a lease. */
export function withoutLease(row: TaskRow): TaskRow {
  return { ...row, lease_id: null, lease_worker_id: null, lease_acquired_at: null, lease_expires_at: null };
}

/** PENDING → RUNNING under the row's lease: one more attempt, progress cleared, lease optionally renewed. */
export function startAttempt(row: TaskRow, now: Date, leaseMs?: number): Step {
  const attempts = row.attempts + 1;
  const next: TaskRow = {
    ...row, state: "RUNNING", attempts, worker_id: row.lease_worker_id ?? row.worker_id, started_at: now, next_attempt_at: null, progress: null,
    lease_expires_at: leaseMs === undefined ? row.lease_expires_at : addMs(now, leaseMs),
  };
  return { next, change: { kind: "STARTED", attempt: attempts, workerId: next.worker_id, leaseId: row.lease_id ?? "", actor: next.worker_id } };
}

/** RUNNING → SUCCEEDED with the output; the lease ends; the last error is cleared. */
export function completeAttempt(row: TaskRow, now: Date, output: Record<string, unknown>): Step {
  const next: TaskRow = { ...withoutLease(row), state: "SUCCEEDED", output, error: null, finished_at: now };
  return { next, change: { kind: "SUCCEEDED", attempt: row.attempts, workerId: row.worker_id, leaseId: row.lease_id ?? "", actor: row.worker_id } };
}

/**
 * A RUNNING attempt failed: back to PENDING after the backoff when the error
 * is retryable (a timeout counts as retryable) and attempts remain; else
 * FAILED, or TIMED_OUT for a timeout.
 */
export function failAttempt(row: TaskRow, now: Date, error: StoredError, actor: string, random = Math.random): Step & { willRetry: boolean } {
  const timedOut = error.reason === LEDGER_REASONS.timedOut;
  const willRetry = (error.retryable || timedOut) && row.attempts < row.max_attempts;
  const base = { attempt: row.attempts, workerId: row.worker_id, leaseId: actor === "ledger" ? "" : row.lease_id ?? "", actor, error };
  if (willRetry) {
    const at = addMs(now, backoffMs(row, row.attempts, random));
    return { willRetry, next: { ...withoutLease(row), state: "PENDING", error, next_attempt_at: at }, change: { ...base, kind: "RETRYING", nextAttemptAt: at } };
  }
  const state = timedOut ? "TIMED_OUT" : "FAILED";
  return { willRetry, next: { ...withoutLease(row), state, error, finished_at: now }, change: { ...base, kind: state } };
}

/** WAITING, PENDING or RUNNING → CANCELLED; the lease ends, and so does any wait. */
export function cancelTask(row: TaskRow, now: Date, reason: string, actor: string): Step {
  const next: TaskRow = { ...withoutLease(row), state: "CANCELLED", finished_at: now, next_attempt_at: null, waiting_on: 0 };
  return { next, change: { kind: "CANCELLED", attempt: row.attempts, workerId: row.worker_id, leaseId: "", actor, reason } };
}

/**
 * RUNNING → WAITING: the attempt parks the task until `waitingOn` of its
 * children have ended (PARKED); like a release it does not count, and the
 * lease ends.
 */
export function parkTask(row: TaskRow, now: Date, waitingOn: number): Step {
  const next: TaskRow = { ...withoutLease(row), state: "WAITING", attempts: row.attempts - 1, next_attempt_at: null, waiting_on: waitingOn, updated_at: now };
  return { next, change: { kind: "PARKED", attempt: row.attempts, workerId: row.worker_id, leaseId: row.lease_id ?? "", actor: row.worker_id } };
}

/** RUNNING → PENDING without counting the attempt, eligible at once. */
export function releaseTask(row: TaskRow, now: Date, reason: string): Step {
  const next: TaskRow = { ...withoutLease(row), state: "PENDING", attempts: row.attempts - 1, next_attempt_at: now };
  return { next, change: { kind: "RELEASED", attempt: row.attempts, workerId: row.worker_id, leaseId: row.lease_id ?? "", actor: row.worker_id, reason, nextAttemptAt: now } };
}
