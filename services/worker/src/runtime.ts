import type { ClientDuplexStream } from "@grpc/grpc-js";
import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import { setTimeout as delay } from "node:timers/promises";
import type { ConnectRequest, ConnectResponse, GoAway, Registered, TaskCancellation } from "../../../gen/taskmesh/coordinator/v1/worker_service.js";
import type { Assignment, WorkerInfo } from "../../../gen/taskmesh/worker/v1/worker.js";
import type { CallOptions, Logger } from "../../kit/src/index.js";
import { AgentError, type AgentDefinition } from "./agent.js";
import { backoffDelay, type BackoffOptions } from "./backoff.js";
import { attemptKey, inFlightOf, msOf, type HeldTask, type StopCause } from "./held-task.js";
import { runAttempt } from "./run-attempt.js";

/**
 * The life of a worker: `idle` → `connecting` (opening the stream, or
 * waiting to reconnect) ⇄ `registered` → `draining` (no new work; finishing
 * what it holds) → `stopped`. Any other transition throws.
 */
export type WorkerState = "idle" | "connecting" | "registered" | "draining" | "stopped";

const TRANSITIONS: Record<WorkerState, readonly WorkerState[]> = {
  idle: ["connecting", "stopped"],
  connecting: ["registered", "draining", "stopped"],
  registered: ["connecting", "draining", "stopped"],
  draining: ["stopped"],
  stopped: [],
};

/** What the worker needs of a WorkerService client: the kit client's `connect`. */
export interface WorkerConnector {
  connect(options?: CallOptions): ClientDuplexStream<ConnectRequest, ConnectResponse>;
}

/** Options of a {@link Worker}; all optional but the client, agents and logger. */
export interface WorkerOptions {
  /** The coordinator's WorkerService (`connectUpstream(WorkerServiceService, "coordinator")`). */
  readonly client: WorkerConnector;
  /** The agents it runs, capability names unique. */
  readonly agents: readonly AgentDefinition[];
  readonly logger: Logger;
  /** Stable for the life of the process. @default a random UUID */
  readonly workerId?: string;
  /** @default `worker@<hostname>` */
  readonly name?: string;
  /** The most tasks run at once over all capabilities, 1..1000. @default 8 */
  readonly maxConcurrency?: number;
  /** Free-form labels sent at registration. @default {} */
  readonly labels?: Readonly<Record<string, string>>;
  /** The software version sent at registration. @default "0.0.0" */
  readonly version?: string;
  /** Weight for weighted round-robin, 1..100. @default 1 */
  readonly weight?: number;
  /** Reconnect backoff. @default 200ms doubling to 10s, 20% jitter */
  readonly backoff?: BackoffOptions;
  /** Heartbeat interval until the coordinator sets one, in ms. @default 10000 */
  readonly heartbeatMs?: number;
  /** An unconfirmed result is sent again at the next heartbeat this long after its last send, in ms. @default 5000 */
  readonly resultResendMs?: number;
  /** How long a cancelled handler may take to stop before the cancel is acknowledged anyway, in ms. @default 2000 */
  readonly cancelGraceMs?: number;
  /** How long to wait for the coordinator to close the stream after the worker half-closes it, in ms. @default 1000 */
  readonly closeWaitMs?: number;
}

/** One stream to the coordinator. */
interface Session {
  readonly call: ClientDuplexStream<ConnectRequest, ConnectResponse>;
  registered: boolean;
  /** Set by `go_away` with `reconnect`: reconnect at once, without backoff. */
  reconnectNow: boolean;
  heartbeat: NodeJS.Timeout | undefined;
}

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
  private readonly tasks = new Map<string, HeldTask>();
  private readonly listeners = new Set<() => void>();
  private readonly stopping = new AbortController();
  private current: WorkerState = "idle";
  private session: Session | undefined;
  private loop: Promise<void> | undefined;
  private drainPromise: Promise<void> | undefined;
  private drainNotice: { reason: string; deadline: number } | undefined;

  constructor(options: WorkerOptions) {
    this.options = options;
    this.log = options.logger;
    this.workerId = options.workerId ?? randomUUID();
    this.maxConcurrency = options.maxConcurrency ?? 8;
    if (!Number.isInteger(this.maxConcurrency) || this.maxConcurrency < 1 || this.maxConcurrency > 1000) throw new RangeError(`maxConcurrency must be 1..1000, got ${this.maxConcurrency}`);
    if (options.agents.length === 0) throw new RangeError("a worker needs at least one agent");
    this.agents = new Map(options.agents.map((a) => [a.capability, a]));
    if (this.agents.size !== options.agents.length) throw new RangeError("capability names must be unique");
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
    return [...this.tasks.values()].filter((t) => t.running).length;
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
   * back what still runs (a second `drain_notice` listing it), closes the
   * stream and stops. Idempotent.
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
        for (const task of left) this.stopTask(task, "released", new AgentError("the worker is draining", { reason: "SYS_DRAINING" }));
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
    for (const task of this.tasks.values()) this.stopTask(task, "stopped", new AgentError("the worker stopped", { reason: "SYS_SHUTTING_DOWN" }));
    await this.close();
  }

  private transition(next: WorkerState): void {
    if (!TRANSITIONS[this.current].includes(next)) throw new Error(`illegal worker transition ${this.current} → ${next}`);
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
    this.stopping.abort();
    const session = this.session;
    if (session) {
      try {
        session.call.end();
      } catch {
        // already ended
      }
      const closed = await Promise.race([this.loop?.then(() => true), delay(this.options.closeWaitMs ?? 1000, false)]);
      if (!closed) session.call.cancel();
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
    const session: Session = { call: this.options.client.connect(), registered: false, reconnectNow: false, heartbeat: undefined };
    this.session = session;
    this.write(session, { payload: { $case: "register", value: { worker: this.info, inFlight: this.heldList() } } });
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
        return this.onAssignment(payload.value);
      case "cancel":
        return void this.onCancel(payload.value);
      case "leasesExtended":
        for (const lost of payload.value.lost) {
          const task = [...this.tasks.values()].find((t) => t.assignment.taskId === lost.taskId && t.assignment.leaseId === lost.leaseId);
          if (!task) continue;
          this.log.warn({ taskId: lost.taskId, reason: lost.reason }, "lease lost: stopping the task");
          this.stopTask(task, "lease-lost", new AgentError("the task's lease was lost", { reason: "RES_LEASE_LOST" }));
          this.forget(task);
        }
        return;
      case "resultRecorded": {
        const task = this.tasks.get(attemptKey(payload.value.taskId, payload.value.attempt));
        if (task?.result) {
          if (!payload.value.accepted) this.log.warn({ taskId: task.assignment.taskId, reason: payload.value.reason }, "result refused");
          this.forget(task);
        }
        return;
      }
      case "goAway":
        return this.onGoAway(session, payload.value);
    }
  }

  private onRegistered(session: Session, registered: Registered): void {
    if (session.registered) return;
    session.registered = true;
    const heartbeatMs = msOf(registered.heartbeatInterval) ?? this.options.heartbeatMs ?? 10_000;
    this.log.info({ sessionId: registered.sessionId, coordinator: registered.coordinatorId, heartbeatMs }, "registered");
    session.heartbeat = setInterval(() => this.heartbeat(session), heartbeatMs);
    if (this.current === "connecting") this.transition("registered");
    if (this.drainNotice) this.sendDrainNotice([]);
    for (const task of this.tasks.values()) if (task.result) this.sendResult(task);
    this.changed();
  }

  private heartbeat(session: Session): void {
    this.write(session, { payload: { $case: "heartbeat", value: { inFlight: this.heldList(), load: this.running / this.maxConcurrency, sentAt: new Date() } } });
    const stale = Date.now() - (this.options.resultResendMs ?? 5000);
    for (const task of this.tasks.values()) if (task.result && task.resultSentAt <= stale) this.sendResult(task);
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

  private onAssignment(a: Assignment): void {
    const key = attemptKey(a.taskId, a.attempt);
    const reject = (reason: string, message: string): void =>
      void this.send({ payload: { $case: "rejected", value: { taskId: a.taskId, attempt: a.attempt, leaseId: a.leaseId, reason, message } } });
    if (this.tasks.has(key)) return; // a repeat of an attempt already held: `accepted` was sent
    if (this.current === "draining" || this.current === "stopped") return reject("SYS_DRAINING", "the worker is draining");
    const agent = this.agents.get(a.capability);
    if (!agent) return reject("VAL_UNKNOWN_CAPABILITY", `this worker does not run ${a.capability}`);
    const running = [...this.tasks.values()].filter((t) => t.running);
    if (running.length >= this.maxConcurrency) return reject("RATE_WORKER_BUSY", `all ${this.maxConcurrency} slots are taken`);
    if (agent.concurrency > 0 && running.filter((t) => t.agent === agent).length >= agent.concurrency) {
      return reject("RATE_WORKER_BUSY", `all ${agent.concurrency} slots of ${a.capability} are taken`);
    }
    const task: HeldTask = {
      key, assignment: a, agent, controller: new AbortController(), started: false, running: true,
      stopped: undefined, result: undefined, resultSentAt: 0, done: Promise.resolve(),
    };
    this.tasks.set(key, task);
    this.send({ payload: { $case: "accepted", value: { taskId: a.taskId, attempt: a.attempt, leaseId: a.leaseId } } });
    task.done = runAttempt(task, {
      log: this.log,
      send: (message) => this.send(message),
      finished: (result) => {
        if (result) {
          task.result = result;
          this.sendResult(task);
        }
        this.changed();
      },
    });
  }

  private async onCancel(c: TaskCancellation): Promise<void> {
    const task = this.tasks.get(attemptKey(c.taskId, c.attempt));
    const ack = (stopped: boolean): void => void this.send({ payload: { $case: "cancelAcknowledged", value: { taskId: c.taskId, attempt: c.attempt, stopped } } });
    if (!task?.running) {
      if (task) this.forget(task);
      return ack(false);
    }
    this.log.info({ taskId: c.taskId, reason: c.reason }, "cancelling");
    this.stopTask(task, "cancelled", new AgentError(c.message || "the task was cancelled", { reason: c.reason || "BIZ_TASK_CANCELLED", retryable: false }));
    await Promise.race([task.done, delay(this.options.cancelGraceMs ?? 2000)]);
    this.forget(task);
    ack(true);
  }

  /** Aborts a running handler for a reason that sends no result. */
  private stopTask(task: HeldTask, cause: StopCause, reason: AgentError): void {
    if (!task.running) return;
    task.stopped = cause;
    task.controller.abort(reason);
  }

  private forget(task: HeldTask): void {
    if (this.tasks.get(task.key) === task) this.tasks.delete(task.key);
    this.changed();
  }

  private heldList() {
    return [...this.tasks.values()].filter((t) => t.stopped === undefined).map(inFlightOf);
  }

  private sendResult(task: HeldTask): void {
    if (!task.result) return;
    if (this.send({ payload: { $case: "result", value: task.result } })) task.resultSentAt = Date.now();
  }

  private sendDrainNotice(released: HeldTask[]): void {
    const notice = this.drainNotice;
    if (!notice) return;
    this.send({ payload: { $case: "drainNotice", value: { reason: notice.reason, released: released.map(inFlightOf), deadline: new Date(notice.deadline) } } });
  }

  /** Sends on the registered stream; false (dropped) while there is none. */
  private send(message: ConnectRequest): boolean {
    const session = this.session;
    return session?.registered ? this.write(session, message) : false;
  }

  private write(session: Session, message: ConnectRequest): boolean {
    try {
      session.call.write(message);
      return true;
    } catch (error) {
      this.log.debug({ err: error }, "write failed");
      return false;
    }
  }
}
