import type { CancelTaskRequest, CancelWorkflowRequest, CompleteTaskRequest, CompleteTaskResponse, CreateWorkflowRequest, ReclaimedTask, SpawnChildrenRequest } from "@taskmesh/contracts/gen/taskmesh/ledger/v1/ledger";
import { TaskState, type Task, type TaskError, type Workflow } from "@taskmesh/contracts/gen/taskmesh/task/v1/task";
import type { TaskCancellation } from "@taskmesh/contracts/gen/taskmesh/coordinator/v1/worker_service";
import type { ProgressReport } from "@taskmesh/contracts/gen/taskmesh/worker/v1/worker";
import type { Duration } from "@taskmesh/contracts/gen/google/protobuf/duration";
import type { CallOptions } from "@taskmesh/kit";
import type { Bus } from "./bus.js";
import type { LedgerClient } from "./dispatcher.js";
import type { WorkerSession } from "./worker-session.js";

/** What follows a write on this replica's worker streams and dispatch (the dispatcher provides it). */
export interface Slots {
  /** Frees the slot a task held on a worker's stream (`session`, or the stream of the worker with that id) and wakes for its capability. */
  forget(session: WorkerSession | string | undefined, taskId: string): void;
  /** Tells whoever holds a worker's stream to stop a task. */
  tellToStop(workerId: string, cancel: TaskCancellation): void;
  /** Marks a capability as having tasks waiting, and wakes the dispatch for it. */
  queued(capability: string): void;
  /** Wakes the dispatch for a capability at a time (a retry's backoff end). */
  wakeAt(capability: string, at: Date): void;
  /** The lease a start renews to. */
  readonly leaseDuration: Duration;
}

/** What {@link TaskWrites} writes through and tells. */
export interface TaskWritesDeps {
  readonly ledger: LedgerClient;
  readonly bus: Bus;
  readonly slots: Slots;
  /** How completions reach the ledger (grouped under load); one call at a time when absent. */
  readonly complete?: (request: CompleteTaskRequest) => Promise<CompleteTaskResponse>;
}

/** A lease a worker holds a task under. */
interface Held {
  readonly taskId: string;
  readonly leaseId: string;
}

/**
 * Every write of a task's state the coordinator makes, each with what must
 * follow it: the transition published on the bus (so `WatchTask` on every
 * replica sees it), the slot the task held on a worker's stream freed and
 * its capability woken, a holder that lost its task told to stop, a task
 * back in the queue marked and woken at its retry time. Callers make the
 * write here and do nothing of that by hand.
 */
export class TaskWrites {
  private readonly completeCall: (request: CompleteTaskRequest) => Promise<CompleteTaskResponse>;

  constructor(private readonly deps: TaskWritesDeps) {
    this.completeCall = deps.complete ?? ((request) => deps.ledger.completeTask(request));
  }

  /** A worker started a task: RUNNING. */
  async start(t: Held): Promise<void> {
    const { transition } = await this.deps.ledger.startTask({ taskId: t.taskId, leaseId: t.leaseId, expectedSequence: undefined, leaseDuration: this.deps.slots.leaseDuration });
    if (transition) this.deps.bus.publishTask(t.taskId, { kind: "transition", transition });
  }

  /**
   * A worker's task succeeded: SUCCEEDED, its slot freed, and the workflow
   * tasks it made ready (PENDING) dispatched here and on every replica.
   * Answers the task.
   */
  async complete(session: WorkerSession, t: Held, output: Record<string, unknown>): Promise<Task> {
    const { task, transition, readyCapabilities } = await this.completeCall({ taskId: t.taskId, leaseId: t.leaseId, output, expectedSequence: undefined });
    if (transition) this.deps.bus.publishTask(t.taskId, { kind: "transition", transition });
    this.deps.slots.forget(session, t.taskId);
    this.ready(readyCapabilities);
    return task!;
  }

  /** Tasks of `capabilities` became PENDING (submitted, a workflow's first tasks, tasks whose dependencies or children ended): dispatch them, here and on every replica. */
  ready(capabilities: readonly string[]): void {
    for (const capability of new Set(capabilities)) {
      this.deps.slots.queued(capability);
      this.deps.bus.publishWork(capability);
    }
  }

  /** A worker's task failed: retried later (PENDING, woken at its backoff's end) or FAILED, its slot freed (and a parked parent it ended the wait of dispatched). */
  async fail(session: WorkerSession, t: Held, error: TaskError): Promise<{ task: Task; willRetry: boolean }> {
    const { task, transition, willRetry, readyCapabilities } = await this.deps.ledger.failTask({ taskId: t.taskId, leaseId: t.leaseId, error, expectedSequence: undefined });
    if (transition) this.deps.bus.publishTask(t.taskId, { kind: "transition", transition });
    this.deps.slots.forget(session, t.taskId);
    if (willRetry && task?.nextAttemptAt) this.deps.slots.wakeAt(task.capability, task.nextAttemptAt);
    this.ready(readyCapabilities);
    return { task: task!, willRetry };
  }

  /**
   * A worker's task waits for its children: WAITING (PARKED), its slot
   * freed; or PENDING again at once when nothing was left to wait for.
   */
  async park(session: WorkerSession, t: Held, children: readonly string[], any: boolean): Promise<Task> {
    const { task, transition } = await this.deps.ledger.parkTask({ taskId: t.taskId, leaseId: t.leaseId, children: [...children], any });
    if (transition) this.deps.bus.publishTask(t.taskId, { kind: "transition", transition });
    this.deps.slots.forget(session, t.taskId);
    if (task && task.state === TaskState.TASK_STATE_PENDING) this.ready([task.capability]);
    return task!;
  }

  /** Creates children of a task a worker runs; the new ones are dispatched here and on every replica. Answers them as they are. */
  async spawn(request: SpawnChildrenRequest): Promise<Task[]> {
    const { children, created } = await this.deps.ledger.spawnChildren(request);
    this.ready(children.filter((_, i) => created[i]).map((c) => c.capability));
    return children;
  }

  /**
   * A task handed back unrun (the worker refused it, is draining, or the
   * assignment could not be sent): its slot on `session` freed, PENDING
   * again, its capability woken.
   */
  async handBack(session: WorkerSession | undefined, t: Held, reason: string): Promise<void> {
    const held = session?.release(t.taskId);
    const { transition, task } = await this.deps.ledger.releaseTask({ taskId: t.taskId, leaseId: t.leaseId, reason: reason.slice(0, 256), expectedSequence: undefined });
    if (transition) this.deps.bus.publishTask(t.taskId, { kind: "transition", transition });
    const capability = held?.capability ?? task?.capability;
    if (capability) this.deps.slots.queued(capability);
  }

  /** A worker's task is no longer its own (its lease lost, the task finished elsewhere): only its slot is freed. */
  dropped(session: WorkerSession, taskId: string): void {
    this.deps.slots.forget(session, taskId);
  }

  /** Cancels a task: CANCELLED, and a worker running it is told to stop. Answers the task. */
  async cancel(request: CancelTaskRequest, options?: CallOptions): Promise<Task> {
    const { task, transition, endedLease } = await this.deps.ledger.cancelTask(request, options);
    if (transition) this.deps.bus.publishTask(request.taskId, { kind: "transition", transition });
    if (endedLease) {
      this.deps.slots.forget(endedLease.workerId, request.taskId);
      this.deps.slots.tellToStop(endedLease.workerId, { taskId: request.taskId, attempt: endedLease.attempt, reason: "BIZ_TASK_CANCELLED", message: request.reason });
    }
    return task!;
  }

  /** Creates a workflow: its first tasks dispatched here and on every replica. Answers it, and whether this call created it. */
  async createWorkflow(request: CreateWorkflowRequest, options?: CallOptions): Promise<{ workflow: Workflow; created: boolean }> {
    const { workflow, created, readyCapabilities } = await this.deps.ledger.createWorkflow(request, options);
    this.ready(readyCapabilities);
    return { workflow: workflow!, created };
  }

  /** Cancels a workflow's unfinished tasks: each worker running one is told to stop. Answers the workflow. */
  async cancelWorkflow(request: CancelWorkflowRequest, options?: CallOptions): Promise<Workflow> {
    const { workflow, endedLeases } = await this.deps.ledger.cancelWorkflow(request, options);
    for (const lease of endedLeases) {
      this.deps.slots.forget(lease.workerId, lease.taskId);
      this.deps.slots.tellToStop(lease.workerId, { taskId: lease.taskId, attempt: lease.attempt, reason: "BIZ_TASK_CANCELLED", message: request.reason });
    }
    return workflow!;
  }

  /** Records a worker's progress report, published to the task's watchers. */
  async progress(p: ProgressReport): Promise<void> {
    const { update } = await this.deps.ledger.recordProgress({
      taskId: p.taskId, leaseId: p.leaseId,
      progress: { percent: p.percent, message: p.message, details: p.details, attempt: p.attempt, reportedAt: undefined },
    });
    if (update) this.deps.bus.publishTask(p.taskId, { kind: "progress", update });
  }

  /** Tasks a sweep took from their holders (lease expired, attempt timed out): each holder told, each capability woken. */
  reclaimed(items: readonly ReclaimedTask[], reason: "RES_LEASE_LOST" | "BIZ_ATTEMPT_TIMED_OUT"): void {
    for (const r of items) {
      if (r.transition) this.deps.bus.publishTask(r.transition.taskId, { kind: "transition", transition: r.transition });
      const lease = r.endedLease;
      if (lease) {
        this.deps.slots.forget(lease.workerId, lease.taskId);
        this.deps.slots.tellToStop(lease.workerId, { taskId: lease.taskId, attempt: lease.attempt, reason, message: reason === "BIZ_ATTEMPT_TIMED_OUT" ? "the attempt ran past its timeout" : "the lease expired" });
      }
      if (r.task) {
        this.deps.slots.queued(r.task.capability);
        if (r.task.nextAttemptAt) this.deps.slots.wakeAt(r.task.capability, r.task.nextAttemptAt);
      }
    }
  }
}
