import type { ConnectResponse } from "../../../gen/taskmesh/coordinator/v1/worker_service.js";
import type { WorkerInfo } from "../../../gen/taskmesh/worker/v1/worker.js";
import type { MeshError } from "../../kit/src/index.js";

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
 * (its used slots), and how to talk to it. Sends are serialized and honor
 * the stream's backpressure.
 */
export class WorkerSession {
  readonly held = new Map<string, HeldTask>();
  /** No new assignments: the worker drains, or the stream is ending. */
  draining = false;
  private sending: Promise<void> = Promise.resolve();
  private readonly capacity: ReadonlyMap<string, number>;

  constructor(
    readonly info: WorkerInfo,
    readonly sessionId: string,
    private readonly sendRaw: (message: ConnectResponse) => Promise<void>,
    /** Ends the stream with an error. */
    readonly end: (error: MeshError) => void,
  ) {
    this.capacity = new Map(info.capabilities.map((c) => [c.name, c.maxConcurrency > 0 ? c.maxConcurrency : info.maxConcurrency]));
  }

  get workerId(): string {
    return this.info.workerId;
  }

  get capabilities(): Iterable<string> {
    return this.capacity.keys();
  }

  serves(capability: string): boolean {
    return this.capacity.has(capability);
  }

  /** Free slots for a capability: the smaller of its own and the worker's total. */
  free(capability: string): number {
    const own = this.capacity.get(capability);
    if (own === undefined || this.draining) return 0;
    let ofCapability = 0;
    for (const t of this.held.values()) if (t.capability === capability) ofCapability++;
    return Math.max(0, Math.min(own - ofCapability, this.info.maxConcurrency - this.held.size));
  }

  /** Sends one message after the ones before it; rejects when the stream is gone. */
  send(message: ConnectResponse): Promise<void> {
    const next = this.sending.then(() => this.sendRaw(message));
    this.sending = next.catch(() => undefined);
    return next;
  }
}
