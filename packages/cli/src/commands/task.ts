/**
 * `taskmesh task submit|get|list|watch|cancel`: tasks on the coordinator's
 * TaskService. Each command returns its exit code: 2 for bad input (found
 * before any call), 1 for a failed call or a task that did not succeed,
 * 130 when Ctrl-C stopped a watch.
 */
import {
  CancelTaskResponse, GetTaskResponse, ListTasksResponse, SubmitTaskResponse, WatchTaskResponse, type WatchTaskRequest,
} from "@taskmesh/contracts/gen/taskmesh/coordinator/v1/task_service";
import { TaskState } from "@taskmesh/contracts/gen/taskmesh/task/v1/task";
import { createClient, type TaskmeshClient, type WatchEvent } from "@taskmesh/client";
import { report, serviceAddress, stdio, using, type Io } from "./rpc.js";
import { listRequest, submitRequest, watchRequest, type ListOptions, type SubmitOptions, type WatchOptions } from "./task-args.js";
import { exitCodeFor, formatTask, paintState, taskTable, watchLine } from "./task-view.js";

/** Exit code when Ctrl-C stopped a watch (128 + SIGINT, as shells report it). */
export const EXIT_INTERRUPTED = 130;

/**
 * Runs `call` with a @taskmesh/client for the coordinator (`--address`,
 * TASKMESH_UPSTREAM_COORDINATOR, or the running instance); a failure is
 * reported (code, reason, violations) as exit code 1.
 */
export function withTasks(address: string | undefined, call: (client: TaskmeshClient) => Promise<number>, io: Io, timeoutMs = 5000): Promise<number> {
  return using(createClient({ address: serviceAddress("coordinator", address), timeoutMs }), call, io);
}

/** A watch event as the WatchTask message it came in (what `--json` prints and {@link watchLine} reads). */
function messageOf(event: WatchEvent): WatchTaskResponse {
  if (event.type === "snapshot") return { event: { $case: "snapshot", value: event.task } };
  if (event.type === "transition") return { event: { $case: "transition", value: event.transition } };
  return { event: { $case: "progress", value: event.progress } };
}

/** What following a task saw. */
interface Followed {
  /** The task's latest known state. */
  state?: TaskState;
  /** Where to resume: the last transition received (or the snapshot's); unset before the snapshot. */
  resumeAfter?: bigint;
  interrupted: boolean;
  error?: unknown;
}

/** Follows a task with WatchTask, handing each message to `print`, until it ends, fails or `signal` aborts. */
async function follow(client: TaskmeshClient, request: WatchTaskRequest, print: (message: WatchTaskResponse) => void, signal: AbortSignal): Promise<Followed> {
  const seen: Followed = { interrupted: false };
  try {
    for await (const watched of client.watch(request.id, { signal, ...(request.afterSequence === undefined ? {} : { afterSequence: request.afterSequence }) })) {
      const message = messageOf(watched);
      const event = message.event;
      if (event?.$case === "snapshot") {
        seen.state = event.value.state;
        seen.resumeAfter = request.afterSequence ?? event.value.sequence;
      } else if (event?.$case === "transition") {
        seen.state = event.value.toState;
        seen.resumeAfter = event.value.sequence;
      }
      print(message);
    }
  } catch (error) {
    if (signal.aborted) seen.interrupted = true;
    else seen.error = error;
  }
  return seen;
}

/** Prints why a follow stopped early (with how to resume) and returns its exit code; undefined when the stream ended normally. */
function stoppedEarly(id: string, seen: Followed, io: Io): number | undefined {
  const resume = `taskmesh task watch ${id}${seen.resumeAfter === undefined ? "" : ` --after-sequence ${seen.resumeAfter}`}`;
  if (seen.interrupted) {
    io.err(`stopped watching ${id}; resume with: ${resume}`);
    return EXIT_INTERRUPTED;
  }
  if (seen.error !== undefined) {
    report(seen.error, io);
    if (seen.resumeAfter !== undefined) io.err(`resume with: ${resume}`);
    return 1;
  }
  return undefined;
}

/** Runs `body` with a signal that Ctrl-C (or SIGTERM) aborts, unless the caller gives one; the handlers are removed after. */
export async function interruptible<T>(given: AbortSignal | undefined, body: (signal: AbortSignal) => Promise<T>): Promise<T> {
  if (given) return body(given);
  const controller = new AbortController();
  const stop = (): void => controller.abort();
  process.on("SIGINT", stop).on("SIGTERM", stop);
  try {
    return await body(controller.signal);
  } finally {
    process.off("SIGINT", stop).off("SIGTERM", stop);
  }
}

/**
 * `taskmesh task submit <capability> [input-json]`: prints the task id; with
 * `--wait`, follows it (lines on stderr) and prints the final task; exit 0
 * only when it SUCCEEDED.
 */
export async function taskSubmit(capability: string, input: string | undefined, opts: SubmitOptions, io: Io = stdio, signal?: AbortSignal): Promise<number> {
  const request = submitRequest(capability, input, opts);
  return withTasks(opts.address, async (client) => {
    const { deduplicated, ...submitted } = await client.submit(request.capability, request.input, {
      ...(request.idempotencyKey ? { idempotencyKey: request.idempotencyKey } : {}), ...(request.maxAttempts === undefined ? {} : { maxAttempts: request.maxAttempts }),
      ...(request.timeout ? { attemptTimeoutMs: Number(request.timeout.seconds) * 1000 + Math.round(request.timeout.nanos / 1e6) } : {}),
      priority: request.priority, labels: request.labels,
    });
    const response = { task: submitted, deduplicated };
    const id = submitted.id;
    const idLine = `${id}${response.deduplicated ? " (deduplicated)" : ""}`;
    if (!opts.wait) {
      io.out(opts.json ? JSON.stringify(SubmitTaskResponse.toJSON(response)) : idLine);
      return 0;
    }
    if (!opts.json) io.out(idLine);
    const seen = await interruptible(signal, (s) => follow(client, { id, afterSequence: undefined }, (m) => io.err(watchLine(m)), s));
    const early = stoppedEarly(id, seen, io);
    if (early !== undefined) return early;
    const task = await client.get(id);
    if (opts.json) io.out(JSON.stringify(SubmitTaskResponse.toJSON({ task, deduplicated: response.deduplicated })));
    else if (task) for (const line of formatTask(task)) io.out(line);
    return exitCodeFor(task?.state);
  }, io);
}

/** `taskmesh task get <id>`: the task as key/value lines, or its GetTaskResponse JSON. */
export async function taskGet(id: string, opts: { json?: boolean; address?: string }, io: Io = stdio): Promise<number> {
  return withTasks(opts.address, async (client) => {
    const task = await client.get(id);
    if (opts.json) io.out(JSON.stringify(GetTaskResponse.toJSON({ task })));
    else for (const line of formatTask(task)) io.out(line);
    return 0;
  }, io);
}

/** `taskmesh task list`: a table of one page of tasks, newest first, and the next page's token. */
export async function taskList(opts: ListOptions, io: Io = stdio): Promise<number> {
  const request = listRequest(opts);
  return withTasks(opts.address, async (client) => {
    const response = await client.list({
      states: request.states, capability: request.capability, ...(request.createdAfter ? { createdAfter: request.createdAfter } : {}),
      pageSize: request.pageSize, pageToken: request.pageToken, ...(request.workflowId ? { workflowId: request.workflowId } : {}),
      ...(request.parentId ? { parentId: request.parentId } : {}),
    });
    if (opts.json) {
      io.out(JSON.stringify(ListTasksResponse.toJSON(response)));
      return 0;
    }
    if (response.tasks.length === 0) io.err("no tasks match");
    else io.out(taskTable(response.tasks, new Date()));
    if (response.nextPageToken) io.out(`next page: --page-token ${response.nextPageToken}`);
    return 0;
  }, io);
}

/** `taskmesh task watch <id>`: one line (or JSON object) per message until the task ends; exit 0 only when it SUCCEEDED. */
export async function taskWatch(id: string, opts: WatchOptions, io: Io = stdio, signal?: AbortSignal): Promise<number> {
  const request = watchRequest(id, opts);
  return withTasks(opts.address, async (client) => {
    const print = (m: WatchTaskResponse): void => io.out(opts.json ? JSON.stringify(WatchTaskResponse.toJSON(m)) : watchLine(m));
    const seen = await interruptible(signal, (s) => follow(client, request, print, s));
    return stoppedEarly(id, seen, io) ?? exitCodeFor(seen.state);
  }, io);
}

/** `taskmesh task cancel <id> [--reason R]`: prints the task's id and new state. */
export async function taskCancel(id: string, opts: { reason?: string; json?: boolean; address?: string }, io: Io = stdio): Promise<number> {
  return withTasks(opts.address, async (client) => {
    const task = await client.cancel(id, { reason: opts.reason ?? "" });
    io.out(opts.json ? JSON.stringify(CancelTaskResponse.toJSON({ task })) : `${task.id} ${paintState(task.state ?? TaskState.TASK_STATE_UNSPECIFIED)}`);
    return 0;
  }, io);
}
