import { setTimeout as delay } from "node:timers/promises";
import type { ChildrenSpawned, ConnectRequest, LeasesExtended, ResultRecorded, SpawnChildren, TaskCancellation } from "@taskmesh/contracts/gen/taskmesh/coordinator/v1/worker_service";
import type { Assignment, TaskResult } from "@taskmesh/contracts/gen/taskmesh/worker/v1/worker";
import type { Logger } from "@taskmesh/kit";
import { AgentError, type AgentDefinition } from "./agent.js";
import { attemptKey, inFlightOf, type HeldTask, type StopCause } from "./held-task.js";
import { runAttempt } from "./run-attempt.js";

/** What the task table needs of its worker. */
export interface TaskTableHooks {
  readonly log: Logger;
  /** The agents by capability. */
  readonly agents: ReadonlyMap<string, AgentDefinition>;
  /** The most tasks run at once over all capabilities. */
  readonly maxConcurrency: number;
  /** How long a cancelled handler may take to stop, in ms. @default 2000 */
  readonly cancelGraceMs: number | undefined;
  /** True once the worker takes no new work (draining or stopped). */
  refusing(): boolean;
  /** Sends on the registered stream; false (dropped) while there is none. */
  send(message: ConnectRequest): boolean;
  /** Sends a result on the registered stream (batched with others ready at once when the coordinator takes that); false while there is none. */
  sendResult(result: TaskResult): boolean;
  /** Called whenever the held tasks change. */
  changed(): void;
  /** Sends a spawn of a task's children and answers the coordinator's reply. */
  spawn?(request: Omit<SpawnChildren, "requestId">): Promise<ChildrenSpawned>;
}

/**
 * The attempts a worker holds, from their assignment until their result is
 * recorded or they are stopped: admits assignments within the concurrency
 * limits, runs them, keeps their results to resend, and stops them when
 * cancelled or their lease is lost.
 */
export class TaskTable {
  private readonly tasks = new Map<string, HeldTask>();
  private readonly hooks: TaskTableHooks;

  constructor(hooks: TaskTableHooks) {
    this.hooks = hooks;
  }

  /** How many attempts are held. */
  get size(): number {
    return this.tasks.size;
  }

  /** How many handlers run now (each holds a slot). */
  get running(): number {
    return [...this.tasks.values()].filter((t) => t.running).length;
  }

  /** The held attempts, in the order they were accepted. */
  values(): IterableIterator<HeldTask> {
    return this.tasks.values();
  }

  /** The held attempts not stopped, as `register` and heartbeats list them. */
  inFlight() {
    return [...this.tasks.values()].filter((t) => t.stopped === undefined).map(inFlightOf);
  }

  /** Accepts and runs an assignment, or rejects it (draining, unknown capability, no free slot). */
  assign(a: Assignment): void {
    const key = attemptKey(a.taskId, a.attempt);
    const reject = (reason: string, message: string): void =>
      void this.hooks.send({ payload: { $case: "rejected", value: { taskId: a.taskId, attempt: a.attempt, leaseId: a.leaseId, reason, message } } });
    if (this.tasks.has(key)) return; // a repeat of an attempt already held
    if (this.hooks.refusing()) return reject("SYS_DRAINING", "the worker is draining");
    const agent = this.hooks.agents.get(a.capability);
    if (!agent) return reject("VAL_UNKNOWN_CAPABILITY", `this worker does not run ${a.capability}`);
    const running = [...this.tasks.values()].filter((t) => t.running);
    if (running.length >= this.hooks.maxConcurrency) return reject("RATE_WORKER_BUSY", `all ${this.hooks.maxConcurrency} slots are taken`);
    if (agent.concurrency > 0 && running.filter((t) => t.agent === agent).length >= agent.concurrency) {
      return reject("RATE_WORKER_BUSY", `all ${agent.concurrency} slots of ${a.capability} are taken`);
    }
    const task: HeldTask = {
      key, assignment: a, agent, controller: new AbortController(), started: false, running: true,
      stopped: undefined, result: undefined, resultSentAt: 0, done: Promise.resolve(),
    };
    // Taken: nothing is sent (no `accepted`); `started` follows if it runs long enough, then the result.
    this.tasks.set(key, task);
    const spawn = this.hooks.spawn;
    task.done = runAttempt(task, {
      log: this.hooks.log,
      send: (message) => this.hooks.send(message),
      ...(spawn ? { spawn: (request: Omit<SpawnChildren, "requestId">) => spawn(request) } : {}),
      finished: (result) => {
        if (result) {
          task.result = result;
          this.sendResult(task);
        }
        this.hooks.changed();
      },
    });
  }

  /** Stops a cancelled attempt (waiting up to the cancel grace) and acknowledges the cancel. */
  async cancel(c: TaskCancellation): Promise<void> {
    const task = this.tasks.get(attemptKey(c.taskId, c.attempt));
    const ack = (stopped: boolean): void => void this.hooks.send({ payload: { $case: "cancelAcknowledged", value: { taskId: c.taskId, attempt: c.attempt, stopped } } });
    if (!task?.running) {
      if (task) this.forget(task);
      return ack(false);
    }
    this.hooks.log.info({ taskId: c.taskId, reason: c.reason }, "cancelling");
    this.stop(task, "cancelled", new AgentError(c.message || "the task was cancelled", { reason: c.reason || "BIZ_TASK_CANCELLED", retryable: false }));
    await Promise.race([task.done, delay(this.hooks.cancelGraceMs ?? 2000)]);
    this.forget(task);
    ack(true);
  }

  /** Stops and forgets the attempts whose lease could not be renewed. */
  leasesExtended(extended: LeasesExtended): void {
    for (const lost of extended.lost) {
      const task = [...this.tasks.values()].find((t) => t.assignment.taskId === lost.taskId && t.assignment.leaseId === lost.leaseId);
      if (!task) continue;
      this.hooks.log.warn({ taskId: lost.taskId, reason: lost.reason }, "lease lost: stopping the task");
      this.stop(task, "lease-lost", new AgentError("the task's lease was lost", { reason: "RES_LEASE_LOST" }));
      this.forget(task);
    }
  }

  /** Forgets an attempt once the coordinator has recorded (or refused) its result. */
  resultRecorded(recorded: ResultRecorded): void {
    const task = this.tasks.get(attemptKey(recorded.taskId, recorded.attempt));
    if (task?.result) {
      if (!recorded.accepted) this.hooks.log.warn({ taskId: task.assignment.taskId, reason: recorded.reason }, "result refused");
      this.forget(task);
    }
  }

  /** Aborts a running handler for a reason that sends no result. */
  stop(task: HeldTask, cause: StopCause, reason: AgentError): void {
    if (!task.running) return;
    task.stopped = cause;
    task.controller.abort(reason);
  }

  /** Sends the attempt's result, if it has one, noting when. */
  sendResult(task: HeldTask): void {
    if (!task.result) return;
    if (this.hooks.sendResult(task.result)) task.resultSentAt = Date.now();
  }

  private forget(task: HeldTask): void {
    if (this.tasks.get(task.key) === task) this.tasks.delete(task.key);
    this.hooks.changed();
  }
}
