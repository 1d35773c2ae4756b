import type { Assignment, InFlightTask, TaskResult } from "@taskmesh/contracts/gen/taskmesh/worker/v1/worker";
import type { AgentDefinition } from "./agent.js";

/**
 * Why a held task's handler was stopped before it could report: cancelled by
 * the coordinator, its lease lost, handed back at a drain deadline, or the
 * worker stopped. A timed-out attempt is not here: it reports a failure.
 */
export type StopCause = "cancelled" | "lease-lost" | "released" | "stopped";

/** One attempt the worker holds: from its assignment until its result is recorded (or it is stopped). */
export interface HeldTask {
  readonly key: string;
  readonly assignment: Assignment;
  readonly agent: AgentDefinition;
  readonly controller: AbortController;
  /** The handler has started (`started` sent). */
  started: boolean;
  /** The handler is running (it holds a concurrency slot). */
  running: boolean;
  /** Set when the handler was stopped for a reason that sends no result. */
  stopped: StopCause | undefined;
  /** The result, kept until `result_recorded`. */
  result: TaskResult | undefined;
  /** When the result was last sent (epoch ms). */
  resultSentAt: number;
  /** Settles when the handler has returned or thrown. */
  done: Promise<void>;
}

/** The key of one attempt of a task. */
export function attemptKey(taskId: string, attempt: number): string {
  return `${taskId}#${attempt}`;
}

/** A held task as `register.in_flight`, heartbeats and drain notices list it. */
export function inFlightOf(task: HeldTask): InFlightTask {
  return { taskId: task.assignment.taskId, attempt: task.assignment.attempt, leaseId: task.assignment.leaseId, started: task.started };
}

/** Milliseconds as a protobuf Duration. */
export function durationOf(ms: number): { seconds: bigint; nanos: number } {
  const whole = Math.max(0, Math.floor(ms));
  return { seconds: BigInt(Math.floor(whole / 1000)), nanos: (whole % 1000) * 1_000_000 };
}

/** A protobuf Duration as milliseconds; `undefined` when absent or not positive. */
export function msOf(duration: { seconds: bigint; nanos: number } | undefined): number | undefined {
  if (!duration) return undefined;
  const ms = Number(duration.seconds) * 1000 + Math.floor(duration.nanos / 1_000_000);
  return ms > 0 ? ms : undefined;
}
