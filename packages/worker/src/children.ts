import { randomUUID } from "node:crypto";
import type { ChildSpec, ChildrenSpawned, ConnectRequest, SpawnChildren } from "@taskmesh/contracts/gen/taskmesh/coordinator/v1/worker_service";
import { TaskState, type RetryPolicy, type Task } from "@taskmesh/contracts/gen/taskmesh/task/v1/task";
import { toDuration } from "@taskmesh/kit/durations";
import { fromRpcStatus } from "@taskmesh/kit/error-wire";
import { AgentError } from "./agent.js";

/** Options of a child task: a submit's, and its step name under the parent. */
export interface SpawnOptions {
  /**
   * Its name under the parent, unique there (1..63 of `a-z 0-9 . _ -`): the
   * key that makes a spawn run again (the handler run again after a crash,
   * or resumed) find the same child. @default `<capability>-<n>` for the
   * n-th spawn of the attempt (the handler must spawn in the same order each run)
   */
  readonly step?: string;
  readonly maxAttempts?: number;
  /** Each attempt's time limit, in ms. */
  readonly attemptTimeoutMs?: number;
  readonly priority?: number;
  readonly labels?: Readonly<Record<string, string>>;
  readonly retryPolicy?: RetryPolicy;
}

/** A child task a handler spawned. */
export interface ChildHandle {
  /** Its step name under the parent. */
  readonly step: string;
  /** The child as the coordinator answered the spawn: just created, or found from an earlier run with its state and outcome. */
  readonly task: Promise<Task>;
  /**
   * Its output once it has SUCCEEDED (a {@link ChildTaskError} when it
   * ended otherwise). While it runs, the attempt parks: the handler stops
   * here, the task waits without a worker slot, and the handler runs again
   * from the start once the child has ended, finding it ended.
   */
  result(): Promise<Record<string, unknown>>;
}

/** A child that ended other than SUCCEEDED, as its parent's handler meets it (non-retryable unless caught). */
export class ChildTaskError extends AgentError {
  readonly child: Task;

  constructor(child: Task) {
    const state = TaskState[child.state].replace("TASK_STATE_", "");
    super(`child task ${child.workflowStep} (${child.id}) ended ${state}${child.error ? `: ${child.error.reason}: ${child.error.message}` : ""}`, {
      reason: `BIZ_CHILD_${state}`, retryable: false, details: { child_id: child.id, step: child.workflowStep },
    });
    this.child = child;
  }
}

const FINAL = new Set([TaskState.TASK_STATE_SUCCEEDED, TaskState.TASK_STATE_FAILED, TaskState.TASK_STATE_CANCELLED, TaskState.TASK_STATE_TIMED_OUT]);

/** Whether a task has ended. */
export function isFinal(task: Task): boolean {
  return FINAL.has(task.state);
}

/** A child's output, or its failure as a {@link ChildTaskError}. */
export function outcomeOf(child: Task): Record<string, unknown> {
  if (child.state === TaskState.TASK_STATE_SUCCEEDED) return child.output ?? {};
  throw new ChildTaskError(child);
}

/**
 * The worker's SpawnChildren requests awaiting their answer: each sent on
 * the current stream, again on every new one until answered (a spawn is
 * keyed by step, so a repeat creates nothing twice).
 */
export class ChildRequests {
  private readonly pending = new Map<string, { message: ConnectRequest; resolve: (answer: ChildrenSpawned) => void }>();

  constructor(private readonly send: (message: ConnectRequest) => boolean) {}

  /** Sends a spawn and resolves with its answer. */
  request(spawn: Omit<SpawnChildren, "requestId">): Promise<ChildrenSpawned> {
    const requestId = randomUUID();
    const message: ConnectRequest = { payload: { $case: "spawn", value: { ...spawn, requestId } } };
    return new Promise((resolve) => {
      this.pending.set(requestId, { message, resolve });
      this.send(message);
    });
  }

  /** The coordinator answered a spawn. */
  answered(answer: ChildrenSpawned): void {
    const waiting = this.pending.get(answer.requestId);
    if (!waiting) return;
    this.pending.delete(answer.requestId);
    waiting.resolve(answer);
  }

  /** A new stream is registered: the unanswered spawns go again. */
  resend(): void {
    for (const { message } of this.pending.values()) this.send(message);
  }
}

/** What an attempt's children need from it. */
export interface ChildScope {
  readonly taskId: string;
  readonly leaseId: string;
  /** Sends a spawn of this task's children and answers the coordinator's reply. */
  spawn(request: Omit<SpawnChildren, "requestId">): Promise<ChildrenSpawned>;
  /** Parks the attempt until `children` have ended (all, or the first with `any`); the returned promise never settles. */
  wait(children: readonly string[], any: boolean): Promise<never>;
}

/** The most children one SpawnChildren carries. */
const MAX_PER_MESSAGE = 1000;

/**
 * The children of one attempt: `spawn` (batched: the spawns of one turn of
 * the event loop go in one message), `all` and `any`.
 */
export function childrenOf(scope: ChildScope) {
  let count = 0;
  let batch: Array<{ spec: ChildSpec; resolve: (task: Task) => void; reject: (error: unknown) => void }> = [];
  const flush = (): void => {
    const items = batch;
    batch = [];
    for (let i = 0; i < items.length; i += MAX_PER_MESSAGE) {
      const part = items.slice(i, i + MAX_PER_MESSAGE);
      scope.spawn({ taskId: scope.taskId, leaseId: scope.leaseId, children: part.map((p) => p.spec) }).then((answer) => {
        if (answer.error) {
          const error = fromRpcStatus(answer.error);
          for (const p of part) p.reject(error);
        } else part.forEach((p, k) => p.resolve(answer.children[k]!));
      }, (error: unknown) => {
        for (const p of part) p.reject(error);
      });
    }
  };
  const spawn = (capability: string, input: Record<string, unknown> = {}, options: SpawnOptions = {}): ChildHandle => {
    count += 1;
    const step = options.step ?? `${capability}-${count}`;
    const spec: ChildSpec = {
      step,
      task: {
        capability, input, idempotencyKey: "", maxAttempts: options.maxAttempts,
        timeout: options.attemptTimeoutMs === undefined ? undefined : toDuration(options.attemptTimeoutMs),
        priority: options.priority ?? 0, labels: { ...options.labels }, retryPolicy: options.retryPolicy,
      },
    };
    const task = new Promise<Task>((resolve, reject) => {
      batch.push({ spec, resolve, reject });
      if (batch.length === 1) queueMicrotask(flush);
    });
    task.catch(() => undefined); // a spawn nobody awaits must not fail the process
    return {
      step, task,
      async result() {
        const child = await task;
        return isFinal(child) ? outcomeOf(child) : scope.wait([child.id], false);
      },
    };
  };
  return {
    spawn,
    /** Every child's output, in order, once all have SUCCEEDED (the first that did not throws); parks while some run. */
    async all(handles: readonly ChildHandle[]): Promise<Array<Record<string, unknown>>> {
      const children = await Promise.all(handles.map((h) => h.task));
      const open = children.filter((c) => !isFinal(c));
      if (open.length > 0) return scope.wait(open.map((c) => c.id), false);
      return children.map(outcomeOf);
    },
    /** The first child (in order) that has ended, with its index and output; parks until one has. */
    async any(handles: readonly ChildHandle[]): Promise<{ index: number; output: Record<string, unknown> }> {
      const children = await Promise.all(handles.map((h) => h.task));
      const index = children.findIndex(isFinal);
      if (index < 0) return scope.wait(children.map((c) => c.id), true);
      return { index, output: outcomeOf(children[index]!) };
    },
  };
}
