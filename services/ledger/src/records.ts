import { durationMs, toDuration } from "@taskmesh/kit";
import {
  TaskState, TaskView, TransitionKind,
  type Task, type TaskCounts, type TaskError, type TaskLease, type TaskProgress, type TaskTransition,
} from "@taskmesh/contracts/gen/taskmesh/task/v1/task";
import { WorkerState, type WorkerInfo, type WorkerStatus } from "@taskmesh/contracts/gen/taskmesh/worker/v1/worker";
import type { HistoryRow, KindName } from "./sql/history.js";
import type { StateName, StoredError, StoredProgress, TaskRow } from "./sql/tasks.js";
import type { WorkerRow } from "./sql/workers.js";

/** The stored name of a task state (`PENDING` for TASK_STATE_PENDING). */
export function stateName(state: TaskState): StateName {
  return TaskState[state].replace(/^TASK_STATE_/, "") as StateName;
}

/** The wire state of a stored state name. */
export function stateOf(name: StateName | ""): TaskState {
  return name === "" ? TaskState.TASK_STATE_UNSPECIFIED : TaskState[`TASK_STATE_${name}`];
}

/** The wire kind of a stored kind name. */
export function kindOf(name: KindName): TransitionKind {
  return TransitionKind[`TRANSITION_KIND_${name}`];
}

/** The event type of a transition kind, e.g. `taskmesh.task.v1.timed_out`. */
export function eventType(kind: KindName | "PROGRESSED"): string {
  return `taskmesh.task.v1.${kind.toLowerCase()}`;
}

/** True when a stored state is terminal. */
export function isFinished(state: StateName): boolean {
  return state !== "PENDING" && state !== "RUNNING" && state !== "WAITING";
}

export { durationMs, toDuration };

export function toError(e: StoredError | null, full: boolean): TaskError | undefined {
  if (!e) return undefined;
  return { reason: e.reason, message: e.message, retryable: e.retryable, details: full ? e.details : undefined };
}

function toProgress(p: StoredProgress | null, full: boolean): TaskProgress | undefined {
  if (!p) return undefined;
  return { percent: p.percent, message: p.message, details: full ? p.details : undefined, attempt: p.attempt, reportedAt: new Date(p.reported_at) };
}

/** The columns of a task row {@link leaseOf} reads. */
export type LeaseColumns = Pick<TaskRow, "id" | "state" | "attempts" | "lease_id" | "lease_worker_id" | "lease_acquired_at" | "lease_expires_at">;

/** The task's current lease, or undefined. */
export function leaseOf(r: LeaseColumns): TaskLease | undefined {
  if (!r.lease_id) return undefined;
  return {
    leaseId: r.lease_id,
    taskId: r.id,
    workerId: r.lease_worker_id ?? "",
    attempt: r.state === "PENDING" ? r.attempts + 1 : r.attempts,
    acquiredAt: r.lease_acquired_at ?? undefined,
    expiresAt: r.lease_expires_at ?? undefined,
  };
}

/** A task row as the wire Task; BASIC leaves out input, output and details. */
export function toTask(r: TaskRow, view: TaskView = TaskView.TASK_VIEW_FULL): Task {
  const full = view !== TaskView.TASK_VIEW_BASIC;
  return {
    id: r.id,
    capability: r.capability,
    state: stateOf(r.state),
    input: full ? r.input : undefined,
    output: full && r.output ? r.output : undefined,
    error: toError(r.error, full),
    attempts: r.attempts,
    maxAttempts: r.max_attempts,
    workerId: r.worker_id,
    traceId: r.trace_id,
    traceparent: r.traceparent,
    idempotencyKey: r.idempotency_key,
    priority: r.priority,
    labels: r.labels,
    timeout: toDuration(r.timeout_ms),
    retryPolicy: {
      maxAttempts: r.max_attempts,
      initialBackoff: toDuration(r.retry_initial_ms),
      maxBackoff: toDuration(r.retry_max_ms),
      multiplier: r.retry_multiplier,
    },
    createdAt: r.created_at,
    updatedAt: r.updated_at,
    startedAt: r.started_at ?? undefined,
    finishedAt: r.finished_at ?? undefined,
    nextAttemptAt: r.next_attempt_at ?? undefined,
    lease: leaseOf(r),
    progress: toProgress(r.progress, full),
    sequence: BigInt(r.sequence),
    createdBy: r.created_by,
    workflowId: r.workflow_id ?? "",
    workflowStep: r.workflow_step ?? "",
    dependsOn: r.depends_on ?? [],
    parentId: r.parent_id ?? "",
  };
}

/** A history row as the wire transition. */
export function toTransition(h: HistoryRow): TaskTransition {
  return {
    taskId: h.task_id,
    sequence: BigInt(h.sequence),
    kind: kindOf(h.kind),
    fromState: stateOf(h.from_state),
    toState: stateOf(h.to_state),
    attempt: h.attempt,
    workerId: h.worker_id,
    leaseId: h.lease_id,
    at: h.at,
    reason: h.reason,
    error: toError(h.error, true),
    traceId: h.trace_id,
    nextAttemptAt: h.next_attempt_at ?? undefined,
    actor: h.actor,
  };
}

/** Empty task counts. */
export function emptyCounts(): TaskCounts {
  return { pending: 0n, running: 0n, succeeded: 0n, failed: 0n, cancelled: 0n, timedOut: 0n, total: 0n, oldestPendingCreatedAt: undefined, waiting: 0n };
}

const COUNT_FIELD: Record<StateName, "waiting" | "pending" | "running" | "succeeded" | "failed" | "cancelled" | "timedOut"> = {
  WAITING: "waiting", PENDING: "pending", RUNNING: "running", SUCCEEDED: "succeeded", FAILED: "failed", CANCELLED: "cancelled", TIMED_OUT: "timedOut",
};

/** Adds `n` tasks of `state` (the oldest created at `oldest`) to `counts`. */
export function addCount(counts: TaskCounts, state: StateName, n: bigint, oldest: Date): void {
  counts[COUNT_FIELD[state]] += n;
  counts.total += n;
  if (state === "PENDING" && (!counts.oldestPendingCreatedAt || oldest < counts.oldestPendingCreatedAt)) counts.oldestPendingCreatedAt = oldest;
}

/** A worker row as the wire WorkerStatus. */
export function toWorker(w: WorkerRow): WorkerStatus {
  return {
    info: w.info as WorkerInfo,
    state: WorkerState[`WORKER_STATE_${w.state}`],
    sessionId: w.session_id,
    coordinatorId: w.coordinator_id,
    connectedAt: w.connected_at,
    lastHeartbeatAt: w.last_heartbeat_at,
    disconnectedAt: w.disconnected_at ?? undefined,
    inFlight: w.in_flight,
    load: w.load,
    firstSeenAt: w.first_seen_at,
  };
}
