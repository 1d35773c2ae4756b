import { SpanStatusCode, context, trace } from "@opentelemetry/api";
import type { ChildrenSpawned, ConnectRequest, SpawnChildren } from "@taskmesh/contracts/gen/taskmesh/coordinator/v1/worker_service";
import type { TaskState } from "@taskmesh/contracts/gen/taskmesh/task/v1/task";
import { WorkerState, type Heartbeat, type TaskResult } from "@taskmesh/contracts/gen/taskmesh/worker/v1/worker";
import { Code, MeshError, durationMs, parseItem, invalidArgument, toDuration, toRpcStatus, uuidv7, type FieldViolation, type Reason } from "@taskmesh/kit";
import { parseSubmit, type ValidSubmit } from "./validation.js";
import { taskSpan } from "./dispatcher.js";
import type { WorkerServiceDeps } from "./worker-deps.js";
import type { WorkerSession } from "./worker-session.js";
import { TaskWrites } from "./task-writes.js";

/** Refusals of a worker-side message that mean "drop it": the task is no longer the worker's. */
export const GONE_REASONS = new Set(["RES_LEASE_LOST", "BIZ_TASK_ALREADY_FINISHED", "RES_TASK_NOT_FOUND", "BIZ_TASK_NOT_RUNNING"]);

/** One message of a worker's stream; a batch of results arrives as one `result` each. */
export type Payload = Exclude<NonNullable<ConnectRequest["payload"]>, { $case: "results" }>;

/** A refusal of the worker protocol, with its reason. */
export function failed(code: Code, reason: `${"VAL" | "SYS" | "RES"}_${string}`, message: string): MeshError {
  return new MeshError({ code, reason, message });
}

/**
 * Applies one worker's messages — results, progress, heartbeats, drain
 * notices — to the ledger, the bus and the dispatcher.
 */
export class WorkerMessages {
  /** Every ledger write here, with its fan-out (bus, slots, wake-ups). */
  private readonly writes: TaskWrites;

  constructor(
    private readonly deps: WorkerServiceDeps,
    private readonly session: WorkerSession,
    /** Reports a message that could not be applied. */
    private readonly failedMessage: (kind: string, taskId: string, error: unknown) => void,
  ) {
    this.writes = new TaskWrites({ ledger: deps.ledger, bus: deps.bus, slots: deps.dispatcher, complete: (request) => deps.batches.complete(request) });
  }


  /** Applies one message; heartbeats go to {@link heartbeat}. */
  async apply(payload: Exclude<Payload, { $case: "heartbeat" }>): Promise<void> {
    const { session, writes } = this;
    const { ledger } = this.deps;
    switch (payload.$case) {
      case "register":
        throw failed(Code.INVALID_ARGUMENT, "VAL_INVALID_MESSAGE", "register is only the first message");
      case "accepted":
        return;
      case "rejected":
        return writes.handBack(session, payload.value, `rejected: ${payload.value.reason}`);
      case "started":
        return writes.start(payload.value);
      case "progress":
        return writes.progress(payload.value);
      case "result":
        return this.result(payload.value);
      case "spawn":
        return this.spawn(payload.value);
      case "cancelAcknowledged":
        writes.dropped(session, payload.value.taskId);
        return;
      case "drainNotice": {
        session.drain();
        await Promise.all(payload.value.released.map((t) => writes.handBack(session, t, "worker draining")
          .catch((error: unknown) => this.failedMessage("drainNotice", t.taskId, error))));
        await ledger.upsertWorker({
          worker: session.info, sessionId: session.sessionId, coordinatorId: this.deps.coordinatorId, state: WorkerState.WORKER_STATE_DRAINING,
          newSession: false, inFlight: session.heldCount, load: 1,
        });
        return;
      }
    }
  }

  /**
   * Creates children of a task the worker runs, each checked as a submit
   * (its violations under `children[i].task`); answers `children_spawned`
   * with them, or with the refusal.
   */
  private async spawn(s: SpawnChildren): Promise<void> {
    const reply = (value: Omit<ChildrenSpawned, "requestId">): Promise<void> =>
      this.session.send({ payload: { $case: "childrenSpawned", value: { requestId: s.requestId, ...value } } });
    try {
      if (s.children.length === 0 || s.children.length > 1000) throw invalidArgument([{ field: "children", description: "must hold 1..1000 children" }]);
      const found: FieldViolation[] = [];
      const valid: Array<ValidSubmit | undefined> = [];
      for (const [i, c] of s.children.entries()) {
        const request = c.task;
        if (!request) {
          found.push({ field: `children[${i}].task`, description: "is required" });
          valid.push(undefined);
          continue;
        }
        const known = this.deps.capabilities.has(request.capability) || await this.deps.capabilities.check(request.capability);
        valid.push(parseItem(`children[${i}].task`, found, () => parseSubmit(request, () => known)));
      }
      if (found.length > 0) throw invalidArgument(found, (found.find((f) => f.reason && f.reason !== "VAL_INVALID_ARGUMENT")?.reason ?? "VAL_INVALID_ARGUMENT") as Reason);
      const children = await this.writes.spawn({
        taskId: s.taskId, leaseId: s.leaseId,
        children: s.children.map((c, i) => {
          const v = valid[i]!;
          return {
            step: c.step,
            task: {
              id: uuidv7(), capability: v.capability, input: v.input, idempotencyKey: "", requestHash: v.requestHash, maxAttempts: v.maxAttempts,
              timeout: toDuration(v.timeoutMs), priority: v.priority, labels: v.labels, retryPolicy: v.retryPolicy, createdBy: "", traceId: "", traceparent: "",
              leaseToWorkerId: "", leaseDuration: undefined,
            },
          };
        }),
      });
      await reply({ children, error: undefined });
    } catch (error) {
      await reply({ children: [], error: toRpcStatus(MeshError.from(error)) });
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
    const { session, writes } = this;
    const { dispatcher } = this.deps;
    const held = session.heldTask(r.taskId);
    const answer = (accepted: boolean, state: TaskState, reason = ""): Promise<void> =>
      session.confirm({ taskId: r.taskId, attempt: r.attempt, accepted, reason, state });
    // Taken before the write frees the slot: the worker's figures for the dispatch strategies.
    const outcome = (succeeded: boolean): void => {
      if (held) dispatcher.recordOutcome(session.workerId, held.capability, succeeded, Date.now() - held.assignedAt, durationMs(r.elapsed));
    };
    try {
      if (r.outcome?.$case === "succeeded") {
        const task = await writes.complete(session, r, r.outcome.value.output ?? {});
        outcome(true);
        await answer(true, task.state);
        return;
      }
      if (r.outcome?.$case === "waiting") {
        const task = await writes.park(session, r, r.outcome.value.children, r.outcome.value.any);
        await answer(true, task.state);
        return;
      }
      const error = r.outcome?.$case === "failed" ? r.outcome.value.error : undefined;
      const { task } = await writes.fail(session, r, error ?? { reason: "SYS_NO_OUTCOME", message: "the worker reported a result without an outcome", retryable: false, details: undefined });
      outcome(false);
      await answer(true, task.state);
    } catch (error) {
      const e = MeshError.from(error);
      if (!GONE_REASONS.has(e.reason)) throw error; // the worker sends it again at a later heartbeat
      writes.dropped(session, r.taskId);
      await answer(false, 0, e.reason);
    }
  }
}
