import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import { setTimeout as delay } from "node:timers/promises";
import type { ConnectRequest, ConnectResponse, GoAway, Registered } from "@taskmesh/contracts/gen/taskmesh/coordinator/v1/worker_service";
import type { WorkerInfo } from "@taskmesh/contracts/gen/taskmesh/worker/v1/worker";
import type { Logger } from "@taskmesh/kit";
import { AgentError, type AgentDefinition } from "./agent.js";
import { backoffDelay } from "./backoff.js";
import { ChildRequests } from "./children.js";
import { inFlightOf, msOf, type HeldTask } from "./held-task.js";
import { sendResult, writeTo, type Session } from "./session.js";
import { TaskTable } from "./task-table.js";
import type { WorkerOptions } from "./worker-options.js";
import { checkTransition, type WorkerState } from "./worker-state.js";

/**
 * The agent runtime: keeps one WorkerService/Connect stream open to the
 * coordinator (reconnecting with backoff), registers its capabilities,
 * heartbeats, runs assignments within its concurrency limits, reports
 * progress and results (resending each result until it is recorded), stops
 * cancelled tasks and drains gracefully.
 */
export class Worker {
  readonly workerId: string;
  readonly log: Logger;
  private readonly options: WorkerOptions;
  private readonly agents: ReadonlyMap<string, AgentDefinition>;
  private readonly maxConcurrency: number;
  private readonly tasks: TaskTable;
  private readonly listeners = new Set<() => void>();
  private readonly stopping = new AbortController();
  private current: WorkerState = "idle";
  private session: Session | undefined;
  private loop: Promise<void> | undefined;
  private drainPromise: Promise<void> | undefined;
  private drainNotice: { reason: string; deadline: number } | undefined;
  /** What the drain handed back at its deadline: listed in the drain notice of every registration until the stream closes. */
  private handedBack: HeldTask[] = [];
  /** Spawns of child tasks awaiting the coordinator's answer (sent again on each new stream). */
  private readonly childRequests = new ChildRequests((message) => this.send(message));

  constructor(options: WorkerOptions) {
    this.options = options;
    this.log = options.logger;
    this.workerId = options.workerId ?? randomUUID();
    this.maxConcurrency = options.maxConcurrency ?? 8;
    if (!Number.isInteger(this.maxConcurrency) || this.maxConcurrency < 1 || this.maxConcurrency > 1000) throw new RangeError(`maxConcurrency must be 1..1000, got ${this.maxConcurrency}`);
    if (options.agents.length === 0) throw new RangeError("a worker needs at least one agent");
    this.agents = new Map(options.agents.map((a) => [a.capability, a]));
    if (this.agents.size !== options.agents.length) throw new RangeError("capability names must be unique");
    this.tasks = new TaskTable({
      log: this.log,
      agents: this.agents,
      maxConcurrency: this.maxConcurrency,
      cancelGraceMs: options.cancelGraceMs,
      refusing: () => this.current === "draining" || this.current === "stopped",
      send: (message) => this.send(message),
      sendResult: (result) => {
        const session = this.session;
        return session?.registered ? sendResult(session, result, this.log) : false;
      },
      changed: () => this.changed(),
      spawn: (request) => this.childRequests.request(request),
    });
  }

  /** The current state. */
  get state(): WorkerState {
    return this.current;
  }

  /** What the worker registers as. */
  get info(): WorkerInfo {
    return {
      workerId: this.workerId,
      name: this.options.name ?? `worker@${hostname()}`,
      capabilities: [...this.agents.values()].map((a) => ({ name: a.capability, maxConcurrency: a.concurrency, description: a.description })),
      maxConcurrency: this.maxConcurrency,
      labels: { ...this.options.labels },
      version: this.options.version ?? "0.0.0",
      weight: this.options.weight ?? 1,
    };
  }

  /** How many handlers run now (each holds a slot). */
  get running(): number {
    return this.tasks.running;
  }

  /** Starts the session loop: connect, register, reconnect with backoff until drained or stopped. */
  start(): void {
    this.transition("connecting");
    this.loop = this.run();
  }

  /** Resolves once the worker is registered (now or later); rejects when `signal` aborts or the worker stops first. */
  whenRegistered(signal?: AbortSignal): Promise<void> {
    return this.until(() => this.current === "registered", signal);
  }

  /**
   * Drains: sends `drain_notice`, takes no new work, lets running handlers
   * finish and their results be recorded until `graceMs` passes, then hands
   * back what still runs (a second `drain_notice` listing it; when the
   * stream is broken just then, the next registration's notice lists it,
   * waiting up to `closeWaitMs` for one), closes the stream and stops.
   * Idempotent.
   */
  drain(graceMs = 10_000, reason = "drain"): Promise<void> {
    if (this.drainPromise) return this.drainPromise;
    if (this.current === "idle" || this.current === "stopped") {
      if (this.current === "idle") this.transition("stopped");
      return (this.drainPromise = Promise.resolve());
    }
    this.transition("draining");
    const deadline = Date.now() + graceMs;
    this.drainNotice = { reason, deadline };
    this.log.info({ graceMs, reason, held: this.tasks.size }, "draining");
    this.sendDrainNotice([]);
    this.drainPromise = (async () => {
      const deadlineSignal = AbortSignal.timeout(Math.max(0, graceMs));
      const finished = await this.until(() => this.tasks.size === 0, deadlineSignal).then(() => true, () => false);
      if (!finished) {
        const left = [...this.tasks.values()].filter((t) => t.running);
        for (const task of left) this.tasks.stop(task, "released", new AgentError("the worker is draining", { reason: "SYS_DRAINING" }));
        this.handedBack = left;
        if (left.length > 0) this.sendDrainNotice(left);
        this.log.warn({ released: left.length, unconfirmed: this.tasks.size - left.length }, "drain grace over: handing back what is left");
      }
      await this.close();
    })();
    return this.drainPromise;
  }

  /** Stops at once: aborts every handler (no results), closes the stream. */
  async stop(): Promise<void> {
    if (this.current === "stopped") return;
    for (const task of this.tasks.values()) this.tasks.stop(task, "stopped", new AgentError("the worker stopped", { reason: "SYS_SHUTTING_DOWN" }));
    await this.close();
  }

  private transition(next: WorkerState): void {
    checkTransition(this.current, next);
    this.current = next;
    this.changed();
  }

  private changed(): void {
    for (const listener of [...this.listeners]) listener();
  }

  /** Resolves when `done()` holds (checked at every change); rejects when `signal` aborts or the worker stops. */
  private until(done: () => boolean, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        if (done()) finish(undefined);
        else if (signal?.aborted) finish(signal.reason ?? new Error("aborted"));
        else if (this.current === "stopped") finish(new Error("the worker stopped"));
      };
      const finish = (error: unknown): void => {
        this.listeners.delete(check);
        signal?.removeEventListener("abort", check);
        if (error === undefined) resolve();
        else reject(error);
      };
      this.listeners.add(check);
      signal?.addEventListener("abort", check, { once: true });
      check();
    });
  }

  private async close(): Promise<void> {
    const waitMs = this.options.closeWaitMs ?? 5000;
    // One budget for both waits below: closing never takes longer than closeWaitMs.
    const closeBy = Date.now() + waitMs;
    if (this.handedBack.length > 0 && !this.session?.registered) {
      // No stream to say it on (the last one broke): the next registration's drain notice hands them back. Wait for one, a while.
      this.log.warn({ handedBack: this.handedBack.length, waitMs }, "no stream to hand back tasks on: waiting to register again");
      await this.until(() => this.session?.registered === true, AbortSignal.timeout(waitMs)).catch(() => undefined);
    }
    this.stopping.abort();
    const session = this.session;
    if (session) {
      try {
        session.call.end();
      } catch {
        // already ended
      }
      const closed = await Promise.race([this.loop?.then(() => true), delay(Math.max(0, closeBy - Date.now()), false)]);
      if (!closed) {
        this.log.warn({ waitMs }, "the coordinator did not close the stream in time: cancelling it (what was handed back is recorded once it gets there)");
        session.call.cancel();
      }
    }
    await this.loop;
    if (this.current !== "stopped") this.transition("stopped");
    this.log.info("stopped");
  }

  private async run(): Promise<void> {
    let failures = 0;
    while (!this.stopping.signal.aborted) {
      if (this.current === "registered") this.transition("connecting");
      const session = await this.connectOnce();
      if (this.stopping.signal.aborted) break;
      if (session.reconnectNow) {
        failures = 0;
        continue;
      }
      failures = session.registered ? 1 : failures + 1;
      const wait = backoffDelay(failures, this.options.backoff);
      this.log.info({ failures, wait }, "stream ended: reconnecting");
      try {
        await delay(wait, undefined, { signal: this.stopping.signal });
      } catch {
        break;
      }
    }
  }

  /** One stream: register, then handle what the coordinator sends until the stream ends. */
  private async connectOnce(): Promise<Session> {
    const session: Session = { call: this.options.client.connect(), registered: false, reconnectNow: false, heartbeat: undefined, batches: false, results: [] };
    this.session = session;
    writeTo(session, { payload: { $case: "register", value: { worker: this.info, inFlight: this.tasks.inFlight(), batches: true } } }, this.log);
    try {
      for await (const message of session.call as AsyncIterable<ConnectResponse>) this.onMessage(session, message);
    } catch (error) {
      const e = error as { code?: number; details?: string };
      this.log.warn({ code: e.code, details: e.details ?? String(error) }, "stream failed");
    } finally {
      if (session.heartbeat) clearInterval(session.heartbeat);
      if (this.session === session) this.session = undefined;
    }
    return session;
  }

  private onMessage(session: Session, message: ConnectResponse): void {
    const payload = message.payload;
    if (!payload) return;
    switch (payload.$case) {
      case "registered":
        return this.onRegistered(session, payload.value);
      case "assignment":
        return this.tasks.assign(payload.value);
      case "assignments":
        for (const assignment of payload.value.assignments) this.tasks.assign(assignment);
        return;
      case "cancel":
        return void this.tasks.cancel(payload.value);
      case "leasesExtended":
        return this.tasks.leasesExtended(payload.value);
      case "resultRecorded":
        return this.tasks.resultRecorded(payload.value);
      case "resultsRecorded":
        for (const recorded of payload.value.results) this.tasks.resultRecorded(recorded);
        return;
      case "goAway":
        return this.onGoAway(session, payload.value);
      case "childrenSpawned":
        return this.childRequests.answered(payload.value);
    }
  }

  private onRegistered(session: Session, registered: Registered): void {
    if (session.registered) return;
    session.registered = true;
    session.batches = registered.batches;
    const heartbeatMs = msOf(registered.heartbeatInterval) ?? this.options.heartbeatMs ?? 10_000;
    this.log.info({ sessionId: registered.sessionId, coordinator: registered.coordinatorId, heartbeatMs }, "registered");
    session.heartbeat = setInterval(() => this.heartbeat(session), heartbeatMs);
    if (this.current === "connecting") this.transition("registered");
    if (this.drainNotice) this.sendDrainNotice(this.handedBack);
    for (const task of this.tasks.values()) if (task.result) this.tasks.sendResult(task);
    this.childRequests.resend();
    this.changed();
  }

  private heartbeat(session: Session): void {
    writeTo(session, { payload: { $case: "heartbeat", value: { inFlight: this.tasks.inFlight(), load: this.running / this.maxConcurrency, sentAt: new Date() } } }, this.log);
    const stale = Date.now() - (this.options.resultResendMs ?? 5000);
    for (const task of this.tasks.values()) if (task.result && task.resultSentAt <= stale) this.tasks.sendResult(task);
  }

  private onGoAway(session: Session, goAway: GoAway): void {
    this.log.info({ reason: goAway.reason, reconnect: goAway.reconnect }, "go away");
    if (goAway.reconnect) {
      session.reconnectNow = true;
      session.call.cancel();
    } else {
      void this.drain(msOf(goAway.gracePeriod) ?? 10_000, goAway.reason || "go_away");
    }
  }

  private sendDrainNotice(released: HeldTask[]): void {
    const notice = this.drainNotice;
    if (!notice) return;
    this.send({ payload: { $case: "drainNotice", value: { reason: notice.reason, released: released.map(inFlightOf), deadline: new Date(notice.deadline) } } });
  }

  /** Sends on the registered stream; false (dropped) while there is none. */
  private send(message: ConnectRequest): boolean {
    const session = this.session;
    return session?.registered ? writeTo(session, message, this.log) : false;
  }
}
