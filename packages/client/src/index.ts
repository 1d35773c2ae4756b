/**
 * @taskmesh/client: submit, read, list, cancel and watch tasks from your own
 * program, through the edge (or straight to a coordinator), with typed
 * answers and typed errors. See this package's README.md.
 */
import { Metadata, type ChannelCredentials } from "@grpc/grpc-js";
import { TaskServiceService, type WatchTaskResponse, type WatchWorkflowResponse } from "@taskmesh/contracts/gen/taskmesh/coordinator/v1/task_service";
import {
  FailurePolicy, TaskState, TaskView, WorkflowState, type RetryPolicy, type Task, type TaskProgressUpdate, type TaskTransition, type Workflow, type WorkflowNode,
} from "@taskmesh/contracts/gen/taskmesh/task/v1/task";
import { createClient as meshClient, type MeshClient } from "@taskmesh/kit/client";
import { toDuration } from "@taskmesh/kit/durations";
import { Code, MeshError } from "@taskmesh/kit/errors";

export { Code, MeshError, TaskState, TaskView, WorkflowState };
export type { RetryPolicy, Task, TaskProgressUpdate, TaskTransition, Workflow, WorkflowNode };

/** How to reach taskmesh. */
export interface ClientOptions {
  /** `host:port` of the edge (`127.0.0.1:8080` under `taskmesh up`), or of a coordinator inside the mesh. */
  readonly address: string;
  /** An access token (`taskmesh token`, or IssueToken with an API key), or a function answering the current one; sent as `authorization: Bearer …`. */
  readonly token?: string | (() => string | Promise<string>);
  /** Each unary call's deadline unless the call gives its own, in ms. @default 10000 */
  readonly timeoutMs?: number;
  /** TLS credentials when the address serves TLS. @default plaintext */
  readonly credentials?: ChannelCredentials;
}

/** What every call takes. */
export interface CallOptions {
  /** Cancels the call (it rejects with a CANCELLED {@link MeshError}). */
  readonly signal?: AbortSignal;
  /** This call's deadline, in ms (DEADLINE_EXCEEDED past it). */
  readonly timeoutMs?: number;
}

/** A submit's options besides its capability and input. */
export interface SubmitOptions extends CallOptions {
  /** A repeat with the same key and request answers the first task (within 24 h). */
  readonly idempotencyKey?: string;
  /** 1..100. @default 3 */
  readonly maxAttempts?: number;
  /** Each attempt's time limit, in ms. @default 5 minutes */
  readonly attemptTimeoutMs?: number;
  /** Dispatch priority, 0 (lowest) .. 9 (highest). @default 0 */
  readonly priority?: number;
  readonly labels?: Readonly<Record<string, string>>;
  readonly retryPolicy?: RetryPolicy;
}

/** One task of a workflow: its name, what it runs, and the names of the tasks it runs after. */
export interface WorkflowTaskInput extends Omit<SubmitOptions, "idempotencyKey" | "signal" | "timeoutMs"> {
  /** Unique in the workflow: 1..63 characters of a-z 0-9 . _ -. */
  readonly name: string;
  readonly capability: string;
  /** Its input; `{ $ref: "<name>" }` or `{ $ref: "<name>.<field>" }` stands for the output (or a field of it) of a task it depends on. */
  readonly input?: Record<string, unknown>;
  /** The names of the tasks it runs after: each must SUCCEED first. */
  readonly dependsOn?: readonly string[];
}

/** A workflow's options besides its tasks. */
export interface WorkflowOptions extends CallOptions {
  /** "fail-fast" (default): the first task that does not succeed cancels the rest; "continue": only what depends on it is cancelled. */
  readonly failurePolicy?: "fail-fast" | "continue";
  /** A repeat with the same key and request answers the first workflow. */
  readonly idempotencyKey?: string;
  readonly name?: string;
  readonly labels?: Readonly<Record<string, string>>;
}

/** A list's filter and page. */
export interface ListOptions extends CallOptions {
  readonly states?: readonly TaskState[];
  readonly capability?: string;
  /** Only the tasks of this workflow. */
  readonly workflowId?: string;
  /** Only the child tasks of this task. */
  readonly parentId?: string;
  readonly createdAfter?: Date;
  readonly createdBefore?: Date;
  /** 1..1000. @default 50 */
  readonly pageSize?: number;
  /** The previous page's `nextPageToken`. */
  readonly pageToken?: string;
  /** "full" includes each task's input and output. @default "basic" */
  readonly view?: "basic" | "full";
}

/** What a watch yields: the task as it is, then each transition and progress report in order. */
export type WatchEvent =
  | { readonly type: "snapshot"; readonly task: Task }
  | { readonly type: "transition"; readonly transition: TaskTransition }
  | { readonly type: "progress"; readonly progress: TaskProgressUpdate };

/** What a workflow's watch yields: the workflow as it is, then each task's new state, and last the workflow as it ended. */
export type WorkflowWatchEvent =
  | { readonly type: "snapshot"; readonly workflow: Workflow }
  | { readonly type: "node"; readonly node: WorkflowNode }
  | { readonly type: "ended"; readonly workflow: Workflow };

/** A submitted task, and whether it is an earlier task its idempotency key named (nothing new was created). */
export type Submitted = Task & { readonly deduplicated: boolean };

/** The typed client: every method rejects with a {@link MeshError} (its `code`, `reason`, `violations`, `retryAfterMs`). */
export interface TaskmeshClient {
  /** Submits a task; answers it as recorded (PENDING, or the earlier task of a repeated idempotency key: `deduplicated`). */
  submit(capability: string, input?: Record<string, unknown>, options?: SubmitOptions): Promise<Submitted>;
  /** The task as it is now (with its input and output). */
  get(id: string, options?: CallOptions): Promise<Task>;
  /** A page of tasks, newest first. */
  list(options?: ListOptions): Promise<{ tasks: Task[]; nextPageToken: string }>;
  /** Cancels a task that has not finished; answers it CANCELLED. */
  cancel(id: string, options?: CallOptions & { readonly reason?: string }): Promise<Task>;
  /** The task's snapshot, then its transitions and progress until it ends (or `signal` aborts, or from `afterSequence` on). */
  watch(id: string, options?: { readonly signal?: AbortSignal; readonly afterSequence?: bigint }): AsyncIterable<WatchEvent>;
  /** Waits until the task has ended (through {@link watch}) and answers it as it ended. */
  result(id: string, options?: { readonly signal?: AbortSignal }): Promise<Task>;
  /** Submits a workflow: named tasks with dependencies, run as each one's dependencies succeed. Answers it with its graph (`deduplicated` for an earlier one). */
  submitWorkflow(tasks: readonly WorkflowTaskInput[], options?: WorkflowOptions): Promise<Workflow & { readonly deduplicated: boolean }>;
  /** A workflow with each task's state. */
  getWorkflow(id: string, options?: CallOptions): Promise<Workflow>;
  /** Cancels every task of a workflow that has not finished. */
  cancelWorkflow(id: string, options?: CallOptions & { readonly reason?: string }): Promise<Workflow>;
  /** The workflow's snapshot, then each task's new state, until it ends (or `signal` aborts). */
  watchWorkflow(id: string, options?: { readonly signal?: AbortSignal }): AsyncIterable<WorkflowWatchEvent>;
  /** Closes the connection. */
  close(): void;
}

const FINAL = new Set([TaskState.TASK_STATE_SUCCEEDED, TaskState.TASK_STATE_FAILED, TaskState.TASK_STATE_CANCELLED, TaskState.TASK_STATE_TIMED_OUT]);

/** Whether a task has ended (SUCCEEDED, FAILED, CANCELLED or TIMED_OUT). */
export function isFinal(state: TaskState): boolean {
  return FINAL.has(state);
}

/**
 * A client for `address` (the edge under `taskmesh up`: `127.0.0.1:8080`).
 *
 * ```ts
 * const taskmesh = createClient({ address: "127.0.0.1:8080", token });
 * const task = await taskmesh.submit("echo", { text: "hi" });
 * const done = await taskmesh.result(task.id);
 * ```
 */
export function createClient(options: ClientOptions): TaskmeshClient {
  const client: MeshClient<typeof TaskServiceService> = meshClient(TaskServiceService, options.address, {
    timeoutMs: options.timeoutMs ?? 10_000, ...(options.credentials ? { credentials: options.credentials } : {}),
  });
  const metadata = async (): Promise<Metadata> => {
    const metadata = new Metadata();
    const token = typeof options.token === "function" ? await options.token() : options.token;
    if (token) metadata.set("authorization", `Bearer ${token}`);
    return metadata;
  };
  const call = async (o: CallOptions | undefined) => ({
    metadata: await metadata(), ...(o?.signal ? { signal: o.signal } : {}), ...(o?.timeoutMs !== undefined ? { timeoutMs: o.timeoutMs } : {}),
  });
  const taskOf = (answer: { task?: Task | undefined }): Task => {
    if (!answer.task) throw new MeshError({ code: Code.INTERNAL, reason: "SYS_NO_TASK", message: "the answer holds no task" });
    return answer.task;
  };

  const workflowOf = (answer: { workflow?: Workflow | undefined }): Workflow => {
    if (!answer.workflow) throw new MeshError({ code: Code.INTERNAL, reason: "SYS_NO_WORKFLOW", message: "the answer holds no workflow" });
    return answer.workflow;
  };

  const watch = (id: string, o: { readonly signal?: AbortSignal; readonly afterSequence?: bigint } = {}): AsyncIterable<WatchEvent> => ({
    async *[Symbol.asyncIterator]() {
      const stream = client.watchTask({ id, afterSequence: o.afterSequence }, await call(o));
      for await (const message of stream as AsyncIterable<WatchTaskResponse>) {
        const event = message.event;
        if (event?.$case === "snapshot") yield { type: "snapshot", task: event.value };
        else if (event?.$case === "transition") yield { type: "transition", transition: event.value };
        else if (event?.$case === "progress") yield { type: "progress", progress: event.value };
      }
    },
  });

  const get = async (id: string, o?: CallOptions): Promise<Task> => taskOf(await client.getTask({ id, view: TaskView.TASK_VIEW_FULL }, await call(o)));

  return {
    async submit(capability, input = {}, o = {}) {
      const answer = await client.submitTask({
        capability, input, idempotencyKey: o.idempotencyKey ?? "", maxAttempts: o.maxAttempts,
        timeout: o.attemptTimeoutMs === undefined ? undefined : toDuration(o.attemptTimeoutMs),
        priority: o.priority ?? 0, labels: { ...o.labels }, retryPolicy: o.retryPolicy,
      }, await call(o));
      return { ...taskOf(answer), deduplicated: answer.deduplicated };
    },
    get,
    async list(o = {}) {
      const page = await client.listTasks({
        states: [...(o.states ?? [])], capability: o.capability ?? "", createdAfter: o.createdAfter, createdBefore: o.createdBefore,
        pageSize: o.pageSize ?? 0, pageToken: o.pageToken ?? "", view: o.view === "full" ? TaskView.TASK_VIEW_FULL : TaskView.TASK_VIEW_BASIC,
        workflowId: o.workflowId ?? "", parentId: o.parentId ?? "",
      }, await call(o));
      return { tasks: page.tasks, nextPageToken: page.nextPageToken };
    },
    async cancel(id, o = {}) {
      return taskOf(await client.cancelTask({ id, reason: o.reason ?? "", expectedSequence: undefined }, await call(o)));
    },
    watch,
    async result(id, o = {}) {
      for await (const event of watch(id, o)) {
        if (event.type === "snapshot" && isFinal(event.task.state)) return event.task;
        if (event.type === "transition" && isFinal(event.transition.toState)) return get(id, o);
      }
      // The watch ended without the task ending (the server closed it): read it as it is.
      return get(id, o);
    },
    async submitWorkflow(tasks, o = {}) {
      const answer = await client.submitWorkflow({
        tasks: tasks.map((t) => ({
          name: t.name, dependsOn: [...(t.dependsOn ?? [])],
          task: {
            capability: t.capability, input: t.input ?? {}, idempotencyKey: "", maxAttempts: t.maxAttempts,
            timeout: t.attemptTimeoutMs === undefined ? undefined : toDuration(t.attemptTimeoutMs), priority: t.priority ?? 0, labels: { ...t.labels }, retryPolicy: t.retryPolicy,
          },
        })),
        failurePolicy: o.failurePolicy === "continue" ? FailurePolicy.FAILURE_POLICY_CONTINUE : FailurePolicy.FAILURE_POLICY_FAIL_FAST,
        idempotencyKey: o.idempotencyKey ?? "", name: o.name ?? "", labels: { ...o.labels },
      }, await call(o));
      return { ...workflowOf(answer), deduplicated: answer.deduplicated };
    },
    async getWorkflow(id, o) {
      return workflowOf(await client.getWorkflow({ id }, await call(o)));
    },
    async cancelWorkflow(id, o = {}) {
      return workflowOf(await client.cancelWorkflow({ id, reason: o.reason ?? "" }, await call(o)));
    },
    watchWorkflow: (id, o = {}) => ({
      async *[Symbol.asyncIterator]() {
        const stream = client.watchWorkflow({ id }, await call(o));
        for await (const message of stream as AsyncIterable<WatchWorkflowResponse>) {
          const event = message.event;
          if (event?.$case === "snapshot") yield { type: "snapshot", workflow: event.value };
          else if (event?.$case === "node") yield { type: "node", node: event.value };
          else if (event?.$case === "ended") yield { type: "ended", workflow: event.value };
        }
      },
    }),
    close: () => client.close(),
  };
}
