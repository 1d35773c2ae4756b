import { SpanKind, SpanStatusCode, context, trace } from "@opentelemetry/api";
import type { ChildrenSpawned, ConnectRequest, SpawnChildren } from "@taskmesh/contracts/gen/taskmesh/coordinator/v1/worker_service";
import type { TaskResult } from "@taskmesh/contracts/gen/taskmesh/worker/v1/worker";
import type { Logger } from "@taskmesh/kit";
import { traceContextOf } from "@taskmesh/kit/trace-context";
import { AgentError, toTaskError, type AgentContext } from "./agent.js";
import { childrenOf } from "./children.js";
import { durationOf, type HeldTask } from "./held-task.js";

/** What an attempt needs from the runtime. */
export interface AttemptHooks {
  readonly log: Logger;
  /** Sends on the current stream (dropped while disconnected). */
  send(message: ConnectRequest): unknown;
  /** Called once the handler has settled: with the result to keep and send, or nothing when the task was stopped. */
  finished(result: TaskResult | undefined): void;
  /** Sends a spawn of the task's children and answers the coordinator's reply (absent: the handler cannot spawn). */
  spawn?(request: Omit<SpawnChildren, "requestId">): Promise<ChildrenSpawned>;
}

const tracer = trace.getTracer("taskmesh.worker");

/**
 * How long a handler runs before `started` is sent, in ms. A task that ends
 * sooner sends only its result, and the coordinator records its start and
 * its outcome in one write (worker_service.proto). Progress sends it at once.
 */
export const STARTED_AFTER_MS = 50;

/** The longest progress status line, in characters (worker.proto ProgressReport: 1 KiB). */
const MAX_PROGRESS_MESSAGE = 1024;

/**
 * Runs one attempt: sends `started` once it has run for
 * {@link STARTED_AFTER_MS} (or reports progress), runs the handler with the task's signal
 * (aborted at the assignment's deadline too), forwards its progress, and
 * turns what it returned or threw into a TaskResult. A timed-out attempt
 * fails with BIZ_ATTEMPT_TIMED_OUT (retryable); a stopped one (cancelled,
 * lease lost, handed back) reports nothing.
 */
export async function runAttempt(task: HeldTask, hooks: AttemptHooks): Promise<void> {
  const { assignment: a, controller } = task;
  // Made on first use: a pino child serializes (and redacts) its bindings at once, about 5% of a worker's CPU per task.
  let child: Logger | undefined;
  const log = (): Logger => (child ??= hooks.log.child({ taskId: a.taskId, attempt: a.attempt, capability: a.capability }));
  const began = Date.now();
  let timedOut = false;
  const deadlineMs = a.deadline ? a.deadline.getTime() - began : undefined;
  const timer = deadlineMs === undefined ? undefined : setTimeout(() => {
    timedOut = true;
    controller.abort(new AgentError("the attempt's deadline passed", { reason: "BIZ_ATTEMPT_TIMED_OUT" }));
  }, Math.max(0, deadlineMs));
  task.started = true;
  let startSent = false;
  const sendStarted = (): void => {
    if (startSent || !task.running || task.stopped !== undefined) return;
    startSent = true;
    hooks.send({ payload: { $case: "started", value: { taskId: a.taskId, attempt: a.attempt, leaseId: a.leaseId, startedAt: new Date(began) } } });
  };
  const startTimer = setTimeout(sendStarted, STARTED_AFTER_MS);
  // Waiting for children parks the attempt: what it waits for, collected over one turn of the event loop, and a
  // promise that settles when the attempt ends that way (the handler is left where it awaits).
  let waiting: { children: Set<string>; any: boolean } | undefined;
  let parked!: () => void;
  const parking = new Promise<"parked">((resolve) => (parked = () => resolve("parked")));
  const children = childrenOf({
    taskId: a.taskId, leaseId: a.leaseId,
    spawn: (request) => {
      if (!hooks.spawn) return Promise.reject(new AgentError("this worker cannot spawn child tasks", { retryable: false }));
      clearTimeout(startTimer);
      sendStarted();
      return hooks.spawn(request);
    },
    wait: (ids, any) => {
      if (!waiting) {
        waiting = { children: new Set(), any };
        queueMicrotask(() => {
          controller.abort(new AgentError("the attempt waits for its child tasks", { reason: "SYS_PARKED" }));
          parked();
        });
      }
      for (const id of ids) waiting.children.add(id);
      if (!any) waiting.any = false;
      return new Promise<never>(() => undefined);
    },
  });
  const ctx: AgentContext = {
    signal: controller.signal, attempt: a.attempt, taskId: a.taskId,
    get log() {
      return log();
    },
    spawn: children.spawn, all: children.all, any: children.any,
    progress: (percent, message, details) => {
      if (!task.running || task.stopped) return;
      clearTimeout(startTimer);
      sendStarted();
      hooks.send({ payload: { $case: "progress", value: {
        taskId: a.taskId, attempt: a.attempt, leaseId: a.leaseId,
        percent: percent === undefined || !Number.isFinite(percent) ? undefined : Math.min(100, Math.max(0, percent)),
        message: (message ?? "").slice(0, MAX_PROGRESS_MESSAGE), details,
      } } });
    },
  };
  let outcome: TaskResult["outcome"];
  // The attempt's span continues the task's trace (the submit's traceparent
  // came with the assignment), so the handler's own spans land there too.
  const parent = traceContextOf({ traceparent: a.traceparent, tracestate: a.tracestate });
  const span = tracer.startSpan(`execute ${a.capability}`, {
    kind: SpanKind.CONSUMER,
    attributes: { "taskmesh.task_id": a.taskId, "taskmesh.attempt": a.attempt, "taskmesh.capability": a.capability, "taskmesh.lease_id": a.leaseId },
  }, parent);
  try {
    const running = Promise.resolve(context.with(trace.setSpan(parent, span), () => task.agent.handler(structuredClone(a.input ?? {}), ctx)));
    const output: unknown = await Promise.race([running, parking]);
    if (output === "parked" && waiting) {
      running.catch(() => undefined); // left where it awaits its children; its signal is aborted
      outcome = { $case: "waiting", value: { children: [...waiting.children], any: waiting.any } };
    } else {
      if (typeof output !== "object" || output === null || Array.isArray(output)) throw new AgentError("the handler returned no output object");
      outcome = { $case: "succeeded", value: { output: output as Record<string, unknown> } };
    }
  } catch (error) {
    outcome = { $case: "failed", value: { error: toTaskError(error) } };
    log().debug({ err: error }, "handler failed");
  } finally {
    if (timer) clearTimeout(timer);
    clearTimeout(startTimer);
    task.running = false;
  }
  if (timedOut) outcome = { $case: "failed", value: { error: { reason: "BIZ_ATTEMPT_TIMED_OUT", message: "the attempt's deadline passed", retryable: true, details: undefined } } };
  if (task.stopped !== undefined) span.setAttribute("taskmesh.stopped", String(task.stopped));
  if (outcome.$case === "waiting") span.setAttribute("taskmesh.waiting_for", outcome.value.children.length);
  if (outcome.$case === "failed") span.setStatus({ code: SpanStatusCode.ERROR, message: `${outcome.value.error?.reason ?? ""}: ${outcome.value.error?.message ?? ""}` });
  span.end();
  hooks.finished(task.stopped === undefined
    ? { taskId: a.taskId, attempt: a.attempt, leaseId: a.leaseId, outcome, elapsed: durationOf(Date.now() - began) }
    : undefined);
}
