import { TaskEvent, type Task } from "@taskmesh/contracts/gen/taskmesh/task/v1/task";
import { eventType, isFinished, stateOf, toDuration, toError, toTransition } from "./records.js";
import type { TransitionRow } from "./sql/relay.js";
import { EVENT_SOURCE } from "./writer.js";

/**
 * The most bytes of input (on `submitted`) or output (on `succeeded`) an
 * event carries, as JSON; a larger one is left out, and a consumer reads
 * the task with GetTask (task.proto, TaskEvent.task).
 */
export const EVENT_PAYLOAD_LIMIT = 16 * 1024;

function fits(value: unknown): boolean {
  return JSON.stringify(value).length <= EVENT_PAYLOAD_LIMIT;
}

/**
 * The task a transition's event carries (task.proto, `TaskEvent.task`):
 * what never changes of the task, its state, attempts, worker, sequence and
 * update time right after the transition, and what the transition set (its
 * error, the next attempt's time while PENDING, the start on STARTED, the
 * end on a final state), plus the input on SUBMITTED and the output on
 * SUCCEEDED, each up to {@link EVENT_PAYLOAD_LIMIT}. No lease and no
 * progress. Built from the history row and the task's columns that never
 * change (input and output included: set once): the event may leave after
 * its task has moved on.
 */
export function transitionTask(h: TransitionRow): Task {
  const found = h.task_found;
  return {
    id: h.task_id,
    capability: h.capability ?? "",
    state: stateOf(h.to_state),
    input: h.input && fits(h.input) ? h.input : undefined,
    output: h.output && fits(h.output) ? h.output : undefined,
    error: toError(h.error, false),
    // A release hands the attempt back: it does not count.
    attempts: h.kind === "RELEASED" ? h.attempt - 1 : h.attempt,
    maxAttempts: h.max_attempts ?? 0,
    workerId: h.worker_id,
    traceId: h.trace_id,
    traceparent: h.traceparent ?? "",
    idempotencyKey: h.idempotency_key ?? "",
    priority: h.priority ?? 0,
    labels: h.labels ?? {},
    timeout: found ? toDuration(h.timeout_ms!) : undefined,
    retryPolicy: found
      ? { maxAttempts: h.max_attempts!, initialBackoff: toDuration(h.retry_initial_ms!), maxBackoff: toDuration(h.retry_max_ms!), multiplier: h.retry_multiplier! }
      : undefined,
    createdAt: h.created_at ?? undefined,
    updatedAt: h.at,
    startedAt: h.kind === "STARTED" ? h.at : undefined,
    finishedAt: isFinished(h.to_state) ? h.at : undefined,
    nextAttemptAt: h.to_state === "PENDING" ? (h.next_attempt_at ?? h.at) : undefined,
    lease: undefined,
    progress: undefined,
    sequence: BigInt(h.sequence),
    createdBy: h.created_by ?? "",
    workflowId: h.workflow_id ?? "",
    workflowStep: h.workflow_step ?? "",
    dependsOn: [],
    parentId: h.parent_id ?? "",
  };
}

/** The event of a transition (its history row), as the relay publishes it. */
export function transitionEvent(h: TransitionRow): TaskEvent {
  return {
    id: h.event_id, type: eventType(h.kind), source: EVENT_SOURCE, subject: h.task_id, time: h.at, sequence: BigInt(h.sequence),
    task: transitionTask(h), change: { $case: "transition", value: toTransition(h) }, traceId: h.trace_id,
  };
}

/** {@link transitionEvent} as the bytes of a Kafka record's value. */
export function transitionEventBytes(h: TransitionRow): Buffer {
  const bytes = TaskEvent.encode(transitionEvent(h)).finish();
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
