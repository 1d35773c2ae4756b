import { SpanStatusCode, context, trace } from "@opentelemetry/api";
import type { ConnectRequest } from "../../../gen/taskmesh/coordinator/v1/worker_service.js";
import type { TaskState } from "../../../gen/taskmesh/task/v1/task.js";
import { WorkerState, type Heartbeat, type ProgressReport, type TaskResult } from "../../../gen/taskmesh/worker/v1/worker.js";
import { Code, MeshError, durationMs } from "../../kit/src/index.js";
import { taskSpan } from "./dispatcher.js";
import type { WorkerServiceDeps } from "./worker-deps.js";
import type { WorkerSession } from "./worker-session.js";

/** Refusals of a worker-side message that mean "drop it": the task is no longer the worker's. */
export const GONE_REASONS = new Set(["RES_LEASE_LOST", "BIZ_TASK_ALREADY_FINISHED", "RES_TASK_NOT_FOUND", "BIZ_TASK_NOT_RUNNING"]);

/** One message of a worker's stream. */
export type Payload = NonNullable<ConnectRequest["payload"]>;

/** A refusal of the worker protocol, with its reason. */
export function failed(code: Code, reason: `${"VAL" | "SYS" | "RES"}_${string}`, message: string): MeshError {
  return new MeshError({ code, reason, message });
}

/**
 * Applies one worker's messages — results, progress, heartbeats, drain
 * notices — to the ledger, the bus and the dispatcher.
 */
export class WorkerMessages {
  constructor(
    private readonly deps: WorkerServiceDeps,
    private readonly session: WorkerSession,
    /** Reports a message that could not be applied. */
    private readonly failedMessage: (kind: string, taskId: string, error: unknown) => void,
  ) {}


  /** Applies one message; heartbeats go to {@link heartbeat}. */
  async apply(payload: Exclude<Payload, { $case: "heartbeat" }>): Promise<void> {
    const { session } = this;
    const { ledger, dispatcher, bus } = this.deps;
    switch (payload.$case) {
      case "register":
        throw failed(Code.INVALID_ARGUMENT, "VAL_INVALID_MESSAGE", "register is only the first message");
      case "accepted":
        return;
      case "rejected": {
        const r = payload.value;
        const held = session.release(r.taskId);
        await ledger.releaseTask({ taskId: r.taskId, leaseId: r.leaseId, reason: `rejected: ${r.reason}`.slice(0, 256), expectedSequence: undefined });
        if (held) dispatcher.queued(held.capability);
        return;
      }
      case "started": {
        const s = payload.value;
        const { transition } = await ledger.startTask({ taskId: s.taskId, leaseId: s.leaseId, expectedSequence: undefined, leaseDuration: this.deps.dispatcher.leaseDuration });
        if (transition) bus.publishTask(s.taskId, { kind: "transition", transition });
        return;
      }
      case "progress":
        return this.progress(payload.value);
      case "result":
        return this.result(payload.value);
      case "cancelAcknowledged":
        dispatcher.forget(session, payload.value.taskId);
        return;
      case "drainNotice": {
        session.drain();
        await Promise.all(payload.value.released.map(async (t) => {
          const held = session.release(t.taskId);
          const { transition } = await ledger.releaseTask({ taskId: t.taskId, leaseId: t.leaseId, reason: "worker draining", expectedSequence: undefined })
            .catch((error: unknown) => (this.failedMessage("drainNotice", t.taskId, error), { transition: undefined }));
          if (transition) bus.publishTask(t.taskId, { kind: "transition", transition });
          if (held) dispatcher.queued(held.capability);
        }));
        await ledger.upsertWorker({
          worker: session.info, sessionId: session.sessionId, coordinatorId: this.deps.coordinatorId, state: WorkerState.WORKER_STATE_DRAINING,
          newSession: false, inFlight: session.heldCount, load: 1,
        });
        return;
      }
    }
  }

  /** Records a heartbeat and renews the leases of the tasks it lists. */
  async heartbeat(h: Heartbeat): Promise<void> {
    const { session } = this;
    const { ledger } = this.deps;
    await ledger.upsertWorker({
      worker: session.info, sessionId: session.sessionId, coordinatorId: this.deps.coordinatorId,
      state: session.draining ? WorkerState.WORKER_STATE_DRAINING : WorkerState.WORKER_STATE_CONNECTED,
      newSession: false, inFlight: h.inFlight.length, load: h.load,
    });
    if (h.inFlight.length === 0) return;
    const { renewed, lost } = await ledger.renewLeases({ workerId: session.workerId, leaseIds: h.inFlight.map((t) => t.leaseId), leaseDuration: this.deps.dispatcher.leaseDuration });
    for (const l of lost) session.release(l.taskId);
    await session.send({ payload: { $case: "leasesExtended", value: { extended: renewed, lost } } });
  }

  private async progress(p: ProgressReport): Promise<void> {
    const { update } = await this.deps.ledger.recordProgress({
      taskId: p.taskId, leaseId: p.leaseId,
      progress: { percent: p.percent, message: p.message, details: p.details, attempt: p.attempt, reportedAt: undefined },
    });
    if (update) this.deps.bus.publishTask(p.taskId, { kind: "progress", update });
  }

  private async result(r: TaskResult): Promise<void> {
    // Recorded in the task's trace, so its result's ledger call is there too.
    const held = this.session.heldTask(r.taskId);
    const span = taskSpan("record result", held?.traceparent, {
      "taskmesh.task_id": r.taskId, "taskmesh.attempt": r.attempt, "taskmesh.outcome": r.outcome?.$case ?? "none", "taskmesh.worker_id": this.session.workerId,
    });
    try {
      await context.with(trace.setSpan(context.active(), span), () => this.recordResult(r));
    } catch (error) {
      span.setStatus({ code: SpanStatusCode.ERROR, message: MeshError.from(error).message });
      throw error;
    } finally {
      span.end();
    }
  }

  private async recordResult(r: TaskResult): Promise<void> {
    const { session } = this;
    const { ledger, dispatcher, bus } = this.deps;
    const held = session.heldTask(r.taskId);
    const answer = (accepted: boolean, state: TaskState, reason = ""): Promise<void> =>
      session.send({ payload: { $case: "resultRecorded", value: { taskId: r.taskId, attempt: r.attempt, accepted, reason, state } } });
    const forget = (): void => dispatcher.forget(session, r.taskId);
    try {
      const runMs = durationMs(r.elapsed);
      if (r.outcome?.$case === "succeeded") {
        const { task, transition } = await this.deps.batches.complete({ taskId: r.taskId, leaseId: r.leaseId, output: r.outcome.value.output ?? {}, expectedSequence: undefined });
        if (transition) bus.publishTask(r.taskId, { kind: "transition", transition });
        if (held) dispatcher.recordOutcome(session.workerId, held.capability, true, Date.now() - held.assignedAt, runMs);
        forget();
        await answer(true, task!.state);
        return;
      }
      const error = r.outcome?.$case === "failed" ? r.outcome.value.error : undefined;
      const { task, transition, willRetry } = await ledger.failTask({
        taskId: r.taskId, leaseId: r.leaseId, expectedSequence: undefined,
        error: error ?? { reason: "SYS_NO_OUTCOME", message: "the worker reported a result without an outcome", retryable: false, details: undefined },
      });
      if (transition) bus.publishTask(r.taskId, { kind: "transition", transition });
      if (held) dispatcher.recordOutcome(session.workerId, held.capability, false, Date.now() - held.assignedAt, runMs);
      forget();
      if (willRetry && task?.nextAttemptAt) dispatcher.wakeAt(task.capability, task.nextAttemptAt);
      await answer(true, task!.state);
    } catch (error) {
      const e = MeshError.from(error);
      if (!GONE_REASONS.has(e.reason)) throw error; // the worker sends it again at a later heartbeat
      forget();
      await answer(false, 0, e.reason);
    }
  }
}
