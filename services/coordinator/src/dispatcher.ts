import { SpanKind, trace, type Attributes, type Span } from "@opentelemetry/api";
import type { LedgerServiceService } from "@taskmesh/contracts/gen/taskmesh/ledger/v1/ledger";
import type { TaskCancellation } from "@taskmesh/contracts/gen/taskmesh/coordinator/v1/worker_service";
import type { Task } from "@taskmesh/contracts/gen/taskmesh/task/v1/task";
import type { Duration } from "@taskmesh/contracts/gen/google/protobuf/duration";
import { MeshError, durationMs, toDuration, type Logger, type MeshClient } from "@taskmesh/kit";
import { traceContextOf } from "@taskmesh/kit/trace-context";
import type { Bus } from "./bus.js";
import { createStrategy, type Candidate, type Strategy, type StrategyName } from "./strategies.js";
import { TaskWrites, type Slots } from "./task-writes.js";
import type { WorkerSession } from "./worker-session.js";

/** The ledger's client, as the kit makes it. */
export type LedgerClient = MeshClient<typeof LedgerServiceService>;

/** Timing of the dispatcher. */
export interface DispatchTiming {
  /** Lease length given with each assignment and renewal, in ms. */
  readonly leaseMs: number;
  /** How often every capability is looked at even without news (retries come due, lost bus messages), in ms. */
  readonly pollMs: number;
  /** How often expired leases and timed-out attempts are taken back, in ms. */
  readonly sweepMs: number;
}

/** A free slot promised to a task about to be created (sync match, see {@link Dispatcher.reserve}). */
export interface Reservation {
  /** The worker to lease the new task to in its insert. */
  readonly workerId: string;
  /** Once the create answered: pushes the task's assignment when the create leased it to the worker, and frees the promise either way (undefined: no task). */
  settle(task: Task | undefined): void;
}

/** What a worker's outcomes taught this replica about it. */
interface WorkerStats {
  latencyEwmaMs: number | undefined;
  readonly byCapability: Map<string, { successes: number; failures: number; meanMs: number | undefined }>;
}

const EWMA_ALPHA = 0.3;
/** The most slots one AssignTasks call fills. */
const MAX_BATCH = 1000;

/**
 * Hands due tasks to the workers connected to this replica. A pass asks the
 * strategy for a plan per capability (worker slots in pick order) and has the
 * ledger fill it in one statement (AssignTasks: SKIP LOCKED, so replicas
 * never get the same task), then pushes each assignment down its worker's
 * stream. Passes run when work may be due: a submit (here or on another
 * replica, through the bus), a freed slot, a new worker, a retry coming due,
 * and every `pollMs` regardless. It also sweeps expired leases and timed-out
 * attempts, telling the holders to stop.
 */
export class Dispatcher implements Slots {
  readonly sessions = new Map<string, WorkerSession>();
  private readonly stats = new Map<string, WorkerStats>();
  private readonly due = new Set<string>();
  /**
   * Capabilities whose tasks may be waiting in the ledger (one was created
   * or handed back unleased, a pass saw no free slot or filled every slot it
   * asked for), each with the mark's generation; a pass that finds fewer
   * tasks than slots clears the mark it saw, unless a newer one came
   * meanwhile. A sync match never passes a waiting task.
   */
  private readonly waiting = new Map<string, number>();
  private generation = 0;
  private readonly timers = new Set<NodeJS.Timeout>();
  private strategyImpl: Strategy;
  /** The sweep's and hand-backs' writes, with their fan-out. */
  private readonly writes: TaskWrites;
  private running: Promise<void> | undefined;
  private again = false;
  private stopped = false;

  constructor(
    private readonly ledger: LedgerClient,
    private readonly bus: Bus,
    private readonly log: Logger,
    readonly timing: DispatchTiming,
    strategy: StrategyName,
  ) {
    this.strategyImpl = createStrategy(strategy);
    this.writes = new TaskWrites({ ledger, bus, slots: this });
  }

  /** The lease each assignment, start and renewal gets. */
  get leaseDuration(): Duration {
    return toDuration(this.timing.leaseMs);
  }

  get strategy(): StrategyName {
    return this.strategyImpl.name;
  }

  /** Switches the strategy for the next pass (its state starts fresh). */
  useStrategy(name: StrategyName): void {
    if (name === this.strategyImpl.name) return;
    this.log.info({ from: this.strategyImpl.name, to: name }, "dispatch strategy changed");
    this.strategyImpl = createStrategy(name);
  }

  /** Starts the periodic poll and sweep. */
  start(): void {
    this.every(this.timing.pollMs, () => this.wake());
    this.every(this.timing.sweepMs, () => this.sweep());
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }

  /** A task of `capability` may be waiting unleased (created, handed back, taken back, due again): mark it and run a pass soon. */
  queued(capability: string): void {
    this.markWaiting(capability);
    this.wake(capability);
  }

  /** Marks that tasks of `capability` may be waiting, with a new generation. */
  private markWaiting(capability: string): void {
    this.waiting.set(capability, ++this.generation);
  }

  /** Tasks of `capability` (every capability when omitted) may be due: run a pass soon. */
  wake(capability?: string): void {
    if (this.stopped) return;
    if (capability === undefined) for (const s of this.sessions.values()) for (const c of s.capabilities) this.due.add(c);
    else this.due.add(capability);
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = new Promise<void>((resolve) => setImmediate(resolve)).then(() => this.passes()).finally(() => (this.running = undefined));
  }

  /**
   * Sync match: a free slot for a task of `capability` about to be created,
   * when none of its tasks may be waiting (see `waiting`), so the new task
   * takes it without passing an older one. The strategy picks the worker;
   * the slot counts as used until {@link Reservation.settle} (as the slots of
   * a pass's claim in flight do). Undefined when there is no free slot or
   * tasks may be waiting: the task is created unleased and a pass assigns it.
   */
  reserve(capability: string): Reservation | undefined {
    if (this.stopped || this.waiting.has(capability)) return undefined;
    const candidates = this.candidates(capability);
    if (!candidates.some((c) => c.free > 0)) return undefined;
    const plan = this.strategyImpl.plan(capability, candidates, 1);
    const workerId = plan.slots[0];
    plan.commit(workerId === undefined ? 0 : 1);
    const session = workerId === undefined ? undefined : this.sessions.get(workerId);
    if (!session) return undefined;
    session.reserve(capability);
    let settled = false;
    return {
      workerId: session.workerId,
      settle: (task) => {
        if (settled) return;
        settled = true;
        session.unreserve(capability);
        if (task?.lease?.workerId === session.workerId) this.deliver(task);
      },
    };
  }

  /** Wakes for `capability` at `at` (a retry's next attempt). */
  wakeAt(capability: string, at: Date): void {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      this.queued(capability);
    }, Math.max(0, at.getTime() - Date.now()) + 5);
    timer.unref();
    this.timers.add(timer);
  }

  add(session: WorkerSession): void {
    this.sessions.set(session.workerId, session);
    this.wake();
  }

  remove(session: WorkerSession): void {
    if (this.sessions.get(session.workerId) === session) this.sessions.delete(session.workerId);
  }

  /** Records an attempt's outcome for the strategies. */
  recordOutcome(workerId: string, capability: string, succeeded: boolean, sinceAssignMs: number, runMs: number | undefined): void {
    let stats = this.stats.get(workerId);
    if (!stats) this.stats.set(workerId, (stats = { latencyEwmaMs: undefined, byCapability: new Map() }));
    stats.latencyEwmaMs = stats.latencyEwmaMs === undefined ? sinceAssignMs : EWMA_ALPHA * sinceAssignMs + (1 - EWMA_ALPHA) * stats.latencyEwmaMs;
    let c = stats.byCapability.get(capability);
    if (!c) stats.byCapability.set(capability, (c = { successes: 0, failures: 0, meanMs: undefined }));
    if (succeeded) c.successes++;
    else c.failures++;
    if (runMs !== undefined) c.meanMs = c.meanMs === undefined ? runMs : EWMA_ALPHA * runMs + (1 - EWMA_ALPHA) * c.meanMs;
  }

  /**
   * Frees the slot a task held on a worker's stream here (`session`, or the
   * stream of the worker with that id) and wakes for its capability when
   * tasks of it may be waiting (else the queue was empty at the last pass,
   * and every task queued since marked it).
   */
  forget(session: WorkerSession | string | undefined, taskId: string): void {
    const held = (typeof session === "string" ? this.sessions.get(session) : session)?.release(taskId);
    if (held && this.waiting.has(held.capability)) this.wake(held.capability);
  }

  /** Tells whoever holds a worker's stream (this replica or another) to stop a task. */
  tellToStop(workerId: string, cancel: TaskCancellation): void {
    const session = this.sessions.get(workerId);
    if (!session) {
      this.bus.publishWorker(workerId, { kind: "cancel", cancel });
      return;
    }
    session.send({ payload: { $case: "cancel", value: cancel } }).catch(() => undefined);
  }

  private async passes(): Promise<void> {
    for (;;) {
      this.again = false;
      try {
        await this.pass();
      } catch (error) {
        this.log.warn({ err: error }, "dispatch pass failed; retrying shortly");
        await new Promise((r) => setTimeout(r, 250));
        this.again = true;
      }
      if (!this.again || this.stopped) return;
    }
  }

  /** One round over the capabilities that may have due tasks. */
  private async pass(): Promise<void> {
    for (const capability of [...this.due]) {
      const candidates = this.candidates(capability);
      const free = candidates.reduce((n, c) => n + c.free, 0);
      if (free === 0) {
        // No slot now: a freed slot wakes this capability again. Tasks may be waiting meanwhile.
        this.due.delete(capability);
        this.markWaiting(capability);
        continue;
      }
      const strategy = this.strategyImpl;
      const plan = strategy.plan(capability, candidates, Math.min(MAX_BATCH, free));
      if (plan.slots.length === 0) {
        this.due.delete(capability);
        this.markWaiting(capability);
        continue;
      }
      const mark = this.waiting.get(capability);
      // The planned slots are taken while the claim runs: a sync match meanwhile must not promise them again.
      const planned = plan.slots.map((workerId) => this.sessions.get(workerId)).filter((s): s is WorkerSession => s !== undefined);
      for (const session of planned) session.reserve(capability);
      let tasks: Task[];
      try {
        ({ tasks } = await this.ledger.assignTasks({ capability, workerIds: [...plan.slots], leaseDuration: this.leaseDuration }));
      } finally {
        for (const session of planned) session.unreserve(capability);
      }
      plan.commit(tasks.length);
      // A full plan means more may be due: look again in the next pass. A partial one found nothing more waiting
      // (unless a task was queued while it ran).
      if (tasks.length < plan.slots.length) {
        this.due.delete(capability);
        if (this.waiting.get(capability) === mark) this.waiting.delete(capability);
      } else {
        this.markWaiting(capability);
        this.again = true;
      }
      for (const task of tasks) this.deliver(task);
    }
  }

  private candidates(capability: string): Candidate[] {
    const out: Candidate[] = [];
    for (const s of this.sessions.values()) {
      if (!s.serves(capability) || s.draining) continue;
      const stats = this.stats.get(s.workerId);
      const c = stats?.byCapability.get(capability);
      out.push({
        workerId: s.workerId, inFlight: s.heldCount + s.reservedCount, maxConcurrency: s.info.maxConcurrency, free: s.free(capability),
        weight: Math.min(100, Math.max(1, s.info.weight || 1)), latencyEwmaMs: stats?.latencyEwmaMs,
        successes: c?.successes ?? 0, failures: c?.failures ?? 0, meanDurationMs: c?.meanMs,
      });
    }
    return out;
  }

  /** Pushes an assigned task to its worker; one whose stream went away meanwhile is handed back at once. */
  private deliver(task: Task): void {
    const lease = task.lease!;
    const session = this.sessions.get(lease.workerId);
    if (!session || session.draining) {
      this.writes.handBack(undefined, { taskId: task.id, leaseId: lease.leaseId }, "the worker left before its assignment was sent")
        .catch((error: unknown) => this.log.debug({ err: error, taskId: task.id }, "hand back failed; the lease will expire"));
      return;
    }
    session.hold({ taskId: task.id, leaseId: lease.leaseId, attempt: lease.attempt, capability: task.capability, assignedAt: Date.now(), traceparent: task.traceparent });
    const timeoutMs = durationMs(task.timeout) ?? 0;
    // A short span in the task's trace: which worker got which attempt.
    taskSpan("dispatch", task.traceparent, {
      "taskmesh.task_id": task.id, "taskmesh.attempt": lease.attempt, "taskmesh.capability": task.capability, "taskmesh.worker_id": lease.workerId,
    }).end();
    session.assign({
      taskId: task.id, attempt: lease.attempt, capability: task.capability, input: task.input ?? {},
      deadline: timeoutMs > 0 ? new Date(Date.now() + timeoutMs) : undefined,
      traceparent: task.traceparent, tracestate: "", leaseId: lease.leaseId, leaseExpiresAt: lease.expiresAt,
      maxAttempts: task.maxAttempts, labels: task.labels, idempotencyKey: task.idempotencyKey,
    }).catch(() => {
      this.writes.handBack(session, { taskId: task.id, leaseId: lease.leaseId }, "the assignment could not be sent")
        .catch((error: unknown) => this.log.debug({ err: error, taskId: task.id }, "hand back failed; the lease will expire"));
    });
  }

  /** Takes back expired leases and timed-out attempts, a batch at a time while more remain. */
  private async sweep(): Promise<void> {
    try {
      for (let more = true, rounds = 0; more && rounds < 10; rounds++) {
        const [expired, timedOut] = await Promise.all([this.ledger.expireLeases({ limit: 500 }), this.ledger.reapTimeouts({ limit: 500 })]);
        this.writes.reclaimed(expired.reclaimed, "RES_LEASE_LOST");
        this.writes.reclaimed(timedOut.reclaimed, "BIZ_ATTEMPT_TIMED_OUT");
        more = expired.more || timedOut.more;
      }
    } catch (error) {
      this.log.warn({ err: error instanceof MeshError ? error.message : error }, "lease sweep failed; next round soon");
    }
  }

  /** Runs `work` every `ms` (never two at once), until stopped. */
  private every(ms: number, work: () => unknown): void {
    const tick = (): void => {
      const timer = setTimeout(async () => {
        this.timers.delete(timer);
        try {
          await work();
        } finally {
          if (!this.stopped) tick();
        }
      }, ms);
      timer.unref();
      this.timers.add(timer);
    };
    tick();
  }
}

const tracer = trace.getTracer("taskmesh.coordinator");

/** A span in a task's trace (a child of its `traceparent`), started now; the caller ends it. */
export function taskSpan(name: string, traceparent: string | undefined, attributes: Attributes): Span {
  return tracer.startSpan(name, { kind: SpanKind.INTERNAL, attributes }, traceContextOf({ traceparent }));
}
