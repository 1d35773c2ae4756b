import type { ConnectRequest, ConnectResponse } from "@taskmesh/contracts/gen/taskmesh/coordinator/v1/worker_service";
import { WorkerState, type Heartbeat, type InFlightTask } from "@taskmesh/contracts/gen/taskmesh/worker/v1/worker";
import { Code, MeshError, toDuration, uuidv7, type CallContext, type Send } from "@taskmesh/kit";
import { GONE_REASONS, WorkerMessages, failed, type Payload } from "./worker-messages.js";
import type { WorkerServiceDeps } from "./worker-deps.js";
import { checkRegistration } from "./worker-registration.js";
import { WorkerSession } from "./worker-session.js";

/**
 * One worker's stream: registration, the session's lifetime, and the
 * per-task ordering of its messages (applied by {@link WorkerMessages}).
 */
export class Connection {
  private session: WorkerSession | undefined;
  private messages: WorkerMessages | undefined;
  private readonly ended = new AbortController();
  /** Per task: the tail of its message chain. */
  private readonly chains = new Map<string, Promise<void>>();
  private lastHeartbeat = Date.now();
  /** The newest heartbeat waiting to be applied: a later one replaces it, as only the latest matters. */
  private pendingHeartbeat: Heartbeat | undefined;

  constructor(
    private readonly deps: WorkerServiceDeps,
    private readonly requests: AsyncIterable<ConnectRequest>,
    private readonly sendRaw: Send<ConnectResponse>,
    private readonly ctx: CallContext,
  ) {}


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
    const session = new WorkerSession(info, sessionId, (m) => this.sendRaw(m), (error) => this.end(error), first.value.payload.value.batches);
    this.session = session;
    this.messages = new WorkerMessages(this.deps, session, (kind, taskId, error) => this.failedMessage(kind, taskId, error));
    // Another stream of this worker (here or on another replica) is replaced.
    const previous = dispatcher.sessions.get(info.workerId);
    if (previous) previous.end(replaced(sessionId));
    if (upsert.replacedSessionId !== "") bus.publishWorker(info.workerId, { kind: "replaced", sessionId });
    const unsubscribe = bus.onWorker(info.workerId, (order) => {
      if (order.kind === "replaced" && order.sessionId !== sessionId) session.end(replaced(order.sessionId));
      else if (order.kind === "cancel") {
        dispatcher.forget(session, order.cancel.taskId);
        session.send({ payload: { $case: "cancel", value: order.cancel } }).catch(() => undefined);
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
        sessionId, heartbeatInterval: toDuration(timing.heartbeatMs), leaseDuration: this.deps.dispatcher.leaseDuration,
        coordinatorId: this.deps.coordinatorId, serverTime: new Date(), batches: true,
      } } });
      await this.adopt(first.value.payload.value.inFlight);
      dispatcher.add(session);
      for (;;) {
        const next = await Promise.race([iterator.next(), ending]);
        if (next.done) break;
        this.handle(next.value.payload);
      }
      // The worker closed its side: what it sent last (a drain notice handing tasks back, a result) is applied
      // before this side closes, so a worker that waits for the close leaves nothing half done behind it.
      await Promise.race([Promise.all(this.chains.values()), ending]);
    } catch (error) {
      outcome = error instanceof MeshError ? error.reason : "stream failed";
      throw error;
    } finally {
      clearInterval(watchdog);
      unsubscribe();
      session.drain();
      dispatcher.remove(session);
      this.ctx.log.info({ workerId: info.workerId, sessionId, outcome, held: session.heldCount }, "worker disconnected");
      // Its leases run out on their own: a worker that reconnects in time keeps its tasks.
      await ledger.markWorkerGone({ workerId: info.workerId, sessionId, reason: outcome, expireLeases: false })
        .catch((error: unknown) => this.ctx.log.debug({ err: error }, "mark worker gone: skipped"));
      if (session.heldCount > 0) dispatcher.wake();
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
    const { renewed, lost } = await this.deps.ledger.renewLeases({ workerId: session.workerId, leaseIds: inFlight.map((t) => t.leaseId), leaseDuration: this.deps.dispatcher.leaseDuration });
    const tasks = await Promise.all(renewed.map((l) => this.deps.ledger.getTask({ id: l.taskId, view: 1 }).then((r) => r.task).catch(() => undefined)));
    renewed.forEach((l, i) => {
      const capability = tasks[i]?.capability;
      if (capability) session.hold({ taskId: l.taskId, leaseId: l.leaseId, attempt: l.attempt, capability, assignedAt: Date.now() });
    });
    await session.send({ payload: { $case: "leasesExtended", value: { extended: renewed, lost } } });
  }

  /**
   * Queues one message behind the earlier ones of its task. Heartbeats share
   * one queue slot: one waiting behind a slow ledger takes the newer ones'
   * place, so they never pile up. (A worker sends `started` only for a task
   * that runs a while: a short task's result records its start in the same
   * write.)
   */
  private handle(payload: ConnectRequest["payload"]): void {
    if (!payload) return;
    if (payload.$case === "results") {
      for (const result of payload.value.results) this.enqueue(result.taskId, { $case: "result", value: result });
      return;
    }
    if (payload.$case === "heartbeat") {
      // Its arrival proves the worker alive, however long a slow ledger keeps it queued.
      this.lastHeartbeat = Date.now();
      const queued = this.pendingHeartbeat !== undefined;
      this.pendingHeartbeat = payload.value;
      if (!queued) this.enqueue("", payload);
      return;
    }
    if (payload.$case === "accepted") return; // sent by older workers; taking an assignment needs no answer
    const taskId = payload.$case === "drainNotice" || payload.$case === "register" ? "" : payload.value.taskId;
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

  /** Applies one queued message; a heartbeat applies the newest one waiting. */
  private async process(payload: Payload): Promise<void> {
    if (payload.$case !== "heartbeat") return this.messages!.apply(payload);
    const latest = this.pendingHeartbeat ?? payload.value;
    this.pendingHeartbeat = undefined;
    return this.messages!.heartbeat(latest);
  }
}

function replaced(sessionId: string): MeshError {
  return new MeshError({ code: Code.ABORTED, reason: "RES_SESSION_REPLACED", message: "the worker connected again elsewhere", metadata: { session_id: sessionId } });
}
