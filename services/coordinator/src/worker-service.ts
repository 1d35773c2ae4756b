import { SpanStatusCode, context, trace } from "@opentelemetry/api";
import type { ConnectRequest, ConnectResponse, WorkerServiceService } from "../../../gen/taskmesh/coordinator/v1/worker_service.js";
import type { TaskState } from "../../../gen/taskmesh/task/v1/task.js";
import { WorkerState, type Heartbeat, type InFlightTask, type ProgressReport, type TaskResult, type WorkerInfo } from "../../../gen/taskmesh/worker/v1/worker.js";
import {
  Code, MeshError, Violations, durationMs, requireScope, toDuration, uuidv7, type CallContext, type Send, type ServiceHandlers,
} from "../../kit/src/index.js";
import { taskSpan } from "./dispatcher.js";
import type { Bus } from "./bus.js";
import type { Dispatcher, LedgerClient } from "./dispatcher.js";
import type { LedgerBatches } from "./ledger-batches.js";
import { isCapabilityName } from "./validation.js";
import { WorkerSession } from "./worker-session.js";

/** Timing of worker sessions. */
export interface SessionTiming {
  /** How often workers heartbeat, in ms. */
  readonly heartbeatMs: number;
  /** How long a worker has to send `register`, in ms. */
  readonly registerTimeoutMs: number;
}

/** Refusals of a worker-side message that mean "drop it": the task is no longer the worker's. */
const GONE_REASONS = new Set(["RES_LEASE_LOST", "BIZ_TASK_ALREADY_FINISHED", "RES_TASK_NOT_FOUND", "BIZ_TASK_NOT_RUNNING"]);
const WORKER_ID = /^[A-Za-z0-9._:-]{1,128}$/;
/** How long a `started` may wait for its task's result to share one ledger write. */
const START_HOLD_MS = 50;

type Payload = NonNullable<ConnectRequest["payload"]>;

function failed(code: Code, reason: `${"VAL" | "SYS" | "RES"}_${string}`, message: string): MeshError {
  return new MeshError({ code, reason, message });
}

/** Checks a registration; INVALID_ARGUMENT (VAL_INVALID_REGISTRATION) with field violations. */
export function checkRegistration(info: WorkerInfo | undefined): WorkerInfo {
  const v = new Violations();
  const reason = "VAL_INVALID_REGISTRATION";
  if (!info) v.add("register.worker", "is required", reason);
  else {
    if (!WORKER_ID.test(info.workerId)) v.add("register.worker.worker_id", "must be 1..128 of A-Z a-z 0-9 . _ : -", reason);
    if (info.capabilities.length === 0) v.add("register.worker.capabilities", "at least one capability is required", reason);
    const names = new Set<string>();
    info.capabilities.forEach((c, i) => {
      if (!isCapabilityName(c.name)) v.add(`register.worker.capabilities[${i}].name`, "is not a capability name", reason);
      else if (names.has(c.name)) v.add(`register.worker.capabilities[${i}].name`, "is given twice", reason);
      names.add(c.name);
      if (c.maxConcurrency < 0 || c.maxConcurrency > 1000) v.add(`register.worker.capabilities[${i}].max_concurrency`, "must be 0..1000", reason);
    });
    if (info.maxConcurrency < 1 || info.maxConcurrency > 1000) v.add("register.worker.max_concurrency", "must be 1..1000", reason);
    if (info.weight < 0 || info.weight > 100) v.add("register.worker.weight", "must be 0..100 (0 for 1)", reason);
  }
  v.check();
  return info!;
}

/** What the WorkerService handlers need. */
export interface WorkerServiceDeps {
  readonly ledger: LedgerClient;
  /** Completions go through it, grouped under load. */
  readonly batches: LedgerBatches;
  readonly dispatcher: Dispatcher;
  readonly bus: Bus;
  readonly coordinatorId: string;
  readonly timing: SessionTiming;
}

/**
 * WorkerService: one Connect stream per worker (see the contract's
 * protocol). Every worker message becomes a ledger call; messages about one
 * task are handled in order, different tasks concurrently.
 */
export function workerService(deps: WorkerServiceDeps): ServiceHandlers<typeof WorkerServiceService> {
  return {
    connect: async (requests, send, ctx) => {
      requireScope(ctx.metadata, "worker");
      return new Connection(deps, requests, send, ctx).run();
    },
  };
}

class Connection {
  private session: WorkerSession | undefined;
  private readonly ended = new AbortController();
  /** Per task: the tail of its message chain. */
  private readonly chains = new Map<string, Promise<void>>();
  /** `started` messages held back, by task. */
  private readonly heldStarts = new Map<string, { timer: NodeJS.Timeout; payload: Payload }>();
  private lastHeartbeat = Date.now();
  /** The newest heartbeat waiting to be applied: a later one replaces it, as only the latest matters. */
  private pendingHeartbeat: Heartbeat | undefined;

  constructor(
    private readonly deps: WorkerServiceDeps,
    private readonly requests: AsyncIterable<ConnectRequest>,
    private readonly sendRaw: Send<ConnectResponse>,
    private readonly ctx: CallContext,
  ) {}

  private get leaseDuration() {
    return toDuration(this.deps.dispatcher.timing.leaseMs);
  }

  async run(): Promise<void> {
    const iterator = this.requests[Symbol.asyncIterator]();
    const { ledger, dispatcher, bus, timing } = this.deps;
    const signal = AbortSignal.any([this.ctx.signal, this.ended.signal]);
    const ending = new Promise<never>((_, reject) => signal.addEventListener("abort", () => reject(signal.reason), { once: true }));
    ending.catch(() => undefined);
    const registerTimer = setTimeout(() => this.end(failed(Code.DEADLINE_EXCEEDED, "SYS_REGISTER_TIMEOUT", "no register message in time")), timing.registerTimeoutMs);
    const first = await Promise.race([iterator.next(), ending]).finally(() => clearTimeout(registerTimer));
    if (first.done) return;
    if (first.value.payload?.$case !== "register") throw failed(Code.FAILED_PRECONDITION, "VAL_REGISTER_FIRST", "the first message must be register");
    const info = checkRegistration(first.value.payload.value.worker);
    const sessionId = uuidv7();
    const upsert = await ledger.upsertWorker({
      worker: info, sessionId, coordinatorId: this.deps.coordinatorId, state: WorkerState.WORKER_STATE_CONNECTED, newSession: true,
      inFlight: first.value.payload.value.inFlight.length, load: 0,
    }, { signal });
    const session = new WorkerSession(info, sessionId, (m) => this.sendRaw(m), (error) => this.end(error));
    this.session = session;
    // Another stream of this worker (here or on another replica) is replaced.
    const previous = dispatcher.sessions.get(info.workerId);
    if (previous) previous.end(replaced(sessionId));
    if (upsert.replacedSessionId !== "") bus.publishWorker(info.workerId, { kind: "replaced", sessionId });
    const unsubscribe = bus.onWorker(info.workerId, (order) => {
      if (order.kind === "replaced" && order.sessionId !== sessionId) session.end(replaced(order.sessionId));
      else if (order.kind === "cancel") {
        session.held.delete(order.cancel.taskId);
        session.send({ payload: { $case: "cancel", value: order.cancel } }).catch(() => undefined);
        dispatcher.wake();
      }
    });
    const watchdog = setInterval(() => {
      if (Date.now() - this.lastHeartbeat > 3 * timing.heartbeatMs) this.end(failed(Code.DEADLINE_EXCEEDED, "SYS_HEARTBEAT_MISSED", "three heartbeats missed"));
    }, timing.heartbeatMs);
    watchdog.unref();
    this.ctx.log.info({ workerId: info.workerId, sessionId, capabilities: info.capabilities.map((c) => c.name) }, "worker connected");
    let outcome = "stream closed";
    try {
      await session.send({ payload: { $case: "registered", value: {
        sessionId, heartbeatInterval: toDuration(timing.heartbeatMs), leaseDuration: this.leaseDuration,
        coordinatorId: this.deps.coordinatorId, serverTime: new Date(),
      } } });
      await this.adopt(first.value.payload.value.inFlight);
      dispatcher.add(session);
      for (;;) {
        const next = await Promise.race([iterator.next(), ending]);
        if (next.done) break;
        this.handle(next.value.payload);
      }
    } catch (error) {
      outcome = error instanceof MeshError ? error.reason : "stream failed";
      throw error;
    } finally {
      clearInterval(watchdog);
      for (const { timer } of this.heldStarts.values()) clearTimeout(timer);
      this.heldStarts.clear();
      unsubscribe();
      session.draining = true;
      dispatcher.remove(session);
      this.ctx.log.info({ workerId: info.workerId, sessionId, outcome, held: session.held.size }, "worker disconnected");
      // Its leases run out on their own: a worker that reconnects in time keeps its tasks.
      await ledger.markWorkerGone({ workerId: info.workerId, sessionId, reason: outcome, expireLeases: false })
        .catch((error: unknown) => this.ctx.log.debug({ err: error }, "mark worker gone: skipped"));
      if (session.held.size > 0) dispatcher.wake();
    }
  }

  /** Ends the stream with `error`. */
  private end(error: MeshError): void {
    if (!this.ended.signal.aborted) this.ended.abort(error);
  }

  /** Takes over the tasks a reconnecting worker still holds: renews their leases; reports the lost ones. */
  private async adopt(inFlight: readonly InFlightTask[]): Promise<void> {
    if (inFlight.length === 0) return;
    const session = this.session!;
    const { renewed, lost } = await this.deps.ledger.renewLeases({ workerId: session.workerId, leaseIds: inFlight.map((t) => t.leaseId), leaseDuration: this.leaseDuration });
    const tasks = await Promise.all(renewed.map((l) => this.deps.ledger.getTask({ id: l.taskId, view: 1 }).then((r) => r.task).catch(() => undefined)));
    renewed.forEach((l, i) => {
      const capability = tasks[i]?.capability;
      if (capability) session.held.set(l.taskId, { taskId: l.taskId, leaseId: l.leaseId, attempt: l.attempt, capability, assignedAt: Date.now() });
    });
    await session.send({ payload: { $case: "leasesExtended", value: { extended: renewed, lost } } });
  }

  /**
   * Queues one message behind the earlier ones of its task. Heartbeats share
   * one queue slot: one waiting behind a slow ledger takes the newer ones'
   * place, so they never pile up. A `started` waits
   * up to {@link START_HOLD_MS}: when the result comes first, CompleteTask or
   * FailTask records the start in the same transaction (one write instead of
   * two for a short task); progress or the wait's end sends it on its own.
   */
  private handle(payload: Payload | undefined): void {
    if (!payload) return;
    if (payload.$case === "heartbeat") {
      // Its arrival proves the worker alive, however long a slow ledger keeps it queued.
      this.lastHeartbeat = Date.now();
      const queued = this.pendingHeartbeat !== undefined;
      this.pendingHeartbeat = payload.value;
      if (!queued) this.enqueue("", payload);
      return;
    }
    const taskId = payload.$case === "drainNotice" || payload.$case === "register" ? "" : payload.value.taskId;
    if (payload.$case === "started") {
      const timer = setTimeout(() => {
        this.heldStarts.delete(taskId);
        this.enqueue(taskId, payload);
      }, START_HOLD_MS);
      this.heldStarts.set(taskId, { timer, payload });
      return;
    }
    const held = this.heldStarts.get(taskId);
    if (held) {
      clearTimeout(held.timer);
      this.heldStarts.delete(taskId);
      if (payload.$case === "progress") this.enqueue(taskId, held.payload);
    }
    this.enqueue(taskId, payload);
  }

  private enqueue(taskId: string, payload: Payload): void {
    const work = (): Promise<void> => this.process(payload).catch((error: unknown) => this.failedMessage(payload.$case, taskId, error));
    const tail = (this.chains.get(taskId) ?? Promise.resolve()).then(work);
    this.chains.set(taskId, tail);
    void tail.finally(() => {
      if (this.chains.get(taskId) === tail) this.chains.delete(taskId);
    });
  }

  private failedMessage(kind: string, taskId: string, error: unknown): void {
    const e = MeshError.from(error);
    if (e.reason === "RES_SESSION_REPLACED") return this.end(e);
    const level = GONE_REASONS.has(e.reason) ? "debug" : "warn";
    this.ctx.log[level]({ kind, taskId, code: Code[e.code], reason: e.reason, msg: e.message }, "worker message not applied");
  }

  private async process(payload: Payload): Promise<void> {
    const session = this.session!;
    const { ledger, dispatcher, bus } = this.deps;
    switch (payload.$case) {
      case "register":
        throw failed(Code.INVALID_ARGUMENT, "VAL_INVALID_MESSAGE", "register is only the first message");
      case "heartbeat": {
        const latest = this.pendingHeartbeat ?? payload.value;
        this.pendingHeartbeat = undefined;
        return this.heartbeat(latest);
      }
      case "accepted":
        return;
      case "rejected": {
        const r = payload.value;
        const held = session.held.get(r.taskId);
        session.held.delete(r.taskId);
        await ledger.releaseTask({ taskId: r.taskId, leaseId: r.leaseId, reason: `rejected: ${r.reason}`.slice(0, 256), expectedSequence: undefined });
        if (held) dispatcher.wake(held.capability);
        return;
      }
      case "started": {
        const s = payload.value;
        const { transition } = await ledger.startTask({ taskId: s.taskId, leaseId: s.leaseId, expectedSequence: undefined, leaseDuration: this.leaseDuration });
        if (transition) bus.publishTask(s.taskId, { kind: "transition", transition });
        return;
      }
      case "progress":
        return this.progress(payload.value);
      case "result":
        return this.result(payload.value);
      case "cancelAcknowledged": {
        const held = session.held.get(payload.value.taskId);
        session.held.delete(payload.value.taskId);
        if (held) dispatcher.wake(held.capability);
        return;
      }
      case "drainNotice": {
        session.draining = true;
        await Promise.all(payload.value.released.map(async (t) => {
          const held = session.held.get(t.taskId);
          session.held.delete(t.taskId);
          const { transition } = await ledger.releaseTask({ taskId: t.taskId, leaseId: t.leaseId, reason: "worker draining", expectedSequence: undefined })
            .catch((error: unknown) => (this.failedMessage("drainNotice", t.taskId, error), { transition: undefined }));
          if (transition) bus.publishTask(t.taskId, { kind: "transition", transition });
          if (held) dispatcher.wake(held.capability);
        }));
        await ledger.upsertWorker({
          worker: session.info, sessionId: session.sessionId, coordinatorId: this.deps.coordinatorId, state: WorkerState.WORKER_STATE_DRAINING,
          newSession: false, inFlight: session.held.size, load: 1,
        });
        return;
      }
    }
  }

  private async heartbeat(h: Heartbeat): Promise<void> {
    const session = this.session!;
    const { ledger } = this.deps;
    await ledger.upsertWorker({
      worker: session.info, sessionId: session.sessionId, coordinatorId: this.deps.coordinatorId,
      state: session.draining ? WorkerState.WORKER_STATE_DRAINING : WorkerState.WORKER_STATE_CONNECTED,
      newSession: false, inFlight: h.inFlight.length, load: h.load,
    });
    if (h.inFlight.length === 0) return;
    const { renewed, lost } = await ledger.renewLeases({ workerId: session.workerId, leaseIds: h.inFlight.map((t) => t.leaseId), leaseDuration: this.leaseDuration });
    for (const l of lost) session.held.delete(l.taskId);
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
    const held = this.session!.held.get(r.taskId);
    const span = taskSpan("record result", held?.traceparent, {
      "taskmesh.task_id": r.taskId, "taskmesh.attempt": r.attempt, "taskmesh.outcome": r.outcome?.$case ?? "none", "taskmesh.worker_id": this.session!.workerId,
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
    const session = this.session!;
    const { ledger, dispatcher, bus } = this.deps;
    const held = session.held.get(r.taskId);
    const answer = (accepted: boolean, state: TaskState, reason = ""): Promise<void> =>
      session.send({ payload: { $case: "resultRecorded", value: { taskId: r.taskId, attempt: r.attempt, accepted, reason, state } } });
    const forget = (): void => {
      session.held.delete(r.taskId);
      if (held) dispatcher.wake(held.capability);
    };
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

function replaced(sessionId: string): MeshError {
  return new MeshError({ code: Code.ABORTED, reason: "RES_SESSION_REPLACED", message: "the worker connected again elsewhere", metadata: { session_id: sessionId } });
}
