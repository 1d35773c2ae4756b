import type { ConnectResponse, ResultRecorded } from "@taskmesh/contracts/gen/taskmesh/coordinator/v1/worker_service";
import type { Assignment, WorkerInfo } from "@taskmesh/contracts/gen/taskmesh/worker/v1/worker";
import type { MeshError } from "@taskmesh/kit";

/** A task a worker holds under a lease this coordinator knows of. */
export interface HeldTask {
  readonly taskId: string;
  readonly leaseId: string;
  readonly attempt: number;
  readonly capability: string;
  /** When it was assigned (or learnt of at a reconnect), epoch ms. */
  readonly assignedAt: number;
  /** The task's W3C traceparent, when known: its result is recorded in the task's trace. */
  readonly traceparent?: string;
}

/**
 * One worker's Connect stream on this replica: who it is, the tasks it holds
 * (its used slots, changed only through {@link hold} and {@link release}) and
 * the slots promised to tasks being created ({@link reserve}),
 * and how to talk to it. Sends are serialized and honor the stream's
 * backpressure; to a worker that takes batches, the assignments (and the
 * result confirmations) that become ready while an earlier message is being
 * written leave together in one message.
 */
export class WorkerSession {
  private readonly held = new Map<string, HeldTask>();
  /** How many of the held tasks are of each capability. */
  private readonly heldOf = new Map<string, number>();
  /** Slots promised to tasks being created (sync match), per capability, until they are held or given up. */
  private readonly reservedOf = new Map<string, number>();
  private reservedTotal = 0;
  private isDraining = false;
  private sending: Promise<void> = Promise.resolve();
  private readonly capacity: ReadonlyMap<string, number>;
  /** Assignments and confirmations waiting for the message that carries them (see {@link batched}). */
  private readonly assignments = new Batch<Assignment>();
  private readonly confirmations = new Batch<ResultRecorded>();

  constructor(
    readonly info: WorkerInfo,
    readonly sessionId: string,
    private readonly sendRaw: (message: ConnectResponse) => Promise<void>,
    /** Ends the stream with an error. */
    readonly end: (error: MeshError) => void,
    /** The worker takes `assignments` and `results_recorded` batches (its `register` said so). */
    private readonly batches = false,
  ) {
    this.capacity = new Map(info.capabilities.map((c) => [c.name, c.maxConcurrency > 0 ? c.maxConcurrency : info.maxConcurrency]));
  }

  get workerId(): string {
    return this.info.workerId;
  }

  get capabilities(): Iterable<string> {
    return this.capacity.keys();
  }

  /** No new assignments: the worker drains, or the stream is ending. */
  get draining(): boolean {
    return this.isDraining;
  }

  /** Takes no new assignments from now on (the tasks it holds stay held). */
  drain(): void {
    this.isDraining = true;
  }

  /** How many tasks it holds (its used slots). */
  get heldCount(): number {
    return this.held.size;
  }

  /** How many slots are promised to tasks being created (see {@link reserve}). */
  get reservedCount(): number {
    return this.reservedTotal;
  }

  /** Promises a free slot of `capability` to a task being created (sync match); {@link unreserve} gives it back. */
  reserve(capability: string): void {
    this.reservedOf.set(capability, (this.reservedOf.get(capability) ?? 0) + 1);
    this.reservedTotal++;
  }

  /** Gives back a slot {@link reserve} promised (the task is held now, or was not leased to this worker). */
  unreserve(capability: string): void {
    const n = this.reservedOf.get(capability) ?? 0;
    if (n === 0) return;
    this.reservedOf.set(capability, n - 1);
    this.reservedTotal--;
  }

  /** The task it holds under `taskId`, if any. */
  heldTask(taskId: string): HeldTask | undefined {
    return this.held.get(taskId);
  }

  /** Records a task it now holds (an assignment, or one it kept across a reconnect). */
  hold(task: HeldTask): void {
    this.release(task.taskId);
    this.held.set(task.taskId, task);
    this.heldOf.set(task.capability, (this.heldOf.get(task.capability) ?? 0) + 1);
  }

  /** Frees the slot of `taskId`; answers the task it held, if any. */
  release(taskId: string): HeldTask | undefined {
    const task = this.held.get(taskId);
    if (!task) return undefined;
    this.held.delete(taskId);
    this.heldOf.set(task.capability, this.heldOf.get(task.capability)! - 1);
    return task;
  }

  serves(capability: string): boolean {
    return this.capacity.has(capability);
  }

  /** Free slots for a capability: the smaller of its own and the worker's total. */
  free(capability: string): number {
    const own = this.capacity.get(capability);
    if (own === undefined || this.isDraining) return 0;
    const used = (this.heldOf.get(capability) ?? 0) + (this.reservedOf.get(capability) ?? 0);
    return Math.max(0, Math.min(own - used, this.info.maxConcurrency - this.held.size - this.reservedTotal));
  }

  /** Sends one message after the ones before it; rejects when the stream is gone. */
  send(message: ConnectResponse | (() => ConnectResponse)): Promise<void> {
    const next = this.sending.then(() => this.sendRaw(typeof message === "function" ? message() : message));
    this.sending = next.catch(() => undefined);
    return next;
  }

  /** Sends an assignment, in one message with the others ready by the time it leaves; rejects when the stream is gone. */
  assign(assignment: Assignment): Promise<void> {
    if (!this.batches) return this.send({ payload: { $case: "assignment", value: assignment } });
    return this.batched(this.assignments, assignment, (items) => items.length === 1
      ? { payload: { $case: "assignment", value: items[0]! } }
      : { payload: { $case: "assignments", value: { assignments: items } } });
  }

  /** Sends a result's confirmation, batched as {@link assign} batches assignments. */
  confirm(recorded: ResultRecorded): Promise<void> {
    if (!this.batches) return this.send({ payload: { $case: "resultRecorded", value: recorded } });
    return this.batched(this.confirmations, recorded, (items) => items.length === 1
      ? { payload: { $case: "resultRecorded", value: items[0]! } }
      : { payload: { $case: "resultsRecorded", value: { results: items } } });
  }

  /**
   * Adds `item` to the message `batch` will send: the first item queues that
   * message behind the ones before it, and everything added until its turn
   * comes (while earlier messages are written) goes in it. Its items share
   * its fate.
   */
  private batched<T>(batch: Batch<T>, item: T, message: (items: T[]) => ConnectResponse): Promise<void> {
    batch.items.push(item);
    return (batch.sent ??= this.send(() => {
      batch.sent = undefined;
      return message(batch.items.splice(0));
    }));
  }
}

/** Items waiting for one message, and that message's send once queued. */
class Batch<T> {
  readonly items: T[] = [];
  sent: Promise<void> | undefined;
}
