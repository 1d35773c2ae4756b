/**
 * `taskmesh workflow submit|get|cancel`: workflows (named tasks with
 * dependencies) on the coordinator's TaskService. Exit codes as `task`'s:
 * 2 for bad input, 1 for a failed call or a workflow that did not succeed.
 */
import { readFileSync } from "node:fs";
import { CancelWorkflowResponse, GetWorkflowResponse, SubmitWorkflowRequest, SubmitWorkflowResponse } from "@taskmesh/contracts/gen/taskmesh/coordinator/v1/task_service";
import { FailurePolicy, WorkflowState, type Workflow } from "@taskmesh/contracts/gen/taskmesh/task/v1/task";
import { durationMs } from "@taskmesh/kit/durations";
import { UsageError } from "@taskmesh/local/usage-error";
import type { TaskmeshClient, WorkflowTaskInput } from "@taskmesh/client";
import { stdio, type Io } from "./rpc.js";
import { EXIT_INTERRUPTED, interruptible, withTasks } from "./task.js";
import { paintState } from "./task-view.js";

/** A @taskmesh/client for the coordinator, as `task` commands make it; a whole workflow may take longer to store than one task. */
const withWorkflows = (address: string | undefined, call: (client: TaskmeshClient) => Promise<number>, io: Io): Promise<number> => withTasks(address, call, io, 30_000);

/** The workflow in `source` (a file, or `-` for standard input): SubmitWorkflow's JSON, as `POST /v1/workflows` takes it. */
export function readWorkflow(source: string, read: (path: string | 0) => string = (p) => readFileSync(p, "utf8")): SubmitWorkflowRequest {
  let text: string;
  try {
    text = read(source === "-" ? 0 : source);
  } catch (error) {
    throw new UsageError(`cannot read ${source}: ${(error as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new UsageError(`${source} is not JSON: ${(error as Error).message}`);
  }
  if (typeof json !== "object" || json === null || !Array.isArray((json as { tasks?: unknown }).tasks)) {
    throw new UsageError(`${source}: expected an object with "tasks", e.g. {"tasks":[{"name":"a","task":{"capability":"echo"}}]}`);
  }
  return SubmitWorkflowRequest.fromJSON(json);
}

/** A SubmitWorkflow request's tasks as the client takes them. */
function tasksOf(request: SubmitWorkflowRequest): WorkflowTaskInput[] {
  return request.tasks.map((t) => {
    const task = t.task;
    const timeout = durationMs(task?.timeout);
    return {
      name: t.name, dependsOn: t.dependsOn, capability: task?.capability ?? "", input: task?.input ?? {}, priority: task?.priority ?? 0, labels: task?.labels ?? {},
      ...(task?.maxAttempts === undefined ? {} : { maxAttempts: task.maxAttempts }), ...(timeout === undefined ? {} : { attemptTimeoutMs: timeout }),
      ...(task?.retryPolicy ? { retryPolicy: task.retryPolicy } : {}),
    };
  });
}

const STATE_NAME = (s: WorkflowState): string => WorkflowState[s].replace("WORKFLOW_STATE_", "");

/** A workflow for people: its id, state and counts, then one line per task (name, state, capability, what it waits for). */
export function formatWorkflow(w: Workflow): string[] {
  const counts = w.counts;
  const tally = counts ? `${counts.succeeded} succeeded, ${counts.running} running, ${counts.pending} pending, ${counts.waiting} waiting, ${counts.failed + counts.timedOut} failed, ${counts.cancelled} cancelled` : "";
  const width = Math.max(4, ...w.nodes.map((n) => n.name.length));
  return [
    `workflow ${w.id}${w.name ? ` (${w.name})` : ""}: ${STATE_NAME(w.state)}; ${tally}`,
    ...w.nodes.map((n) => `  ${n.name.padEnd(width)}  ${paintState(n.state)}  ${n.capability}  ${n.taskId}${n.dependsOn.length ? `  after ${n.dependsOn.join(", ")}` : ""}`),
  ];
}

/** Polls the workflow every `everyMs` until it is not RUNNING (or `signal` aborts); answers it as last read. */
async function untilDone(client: TaskmeshClient, id: string, signal: AbortSignal, everyMs = 500): Promise<Workflow> {
  for (;;) {
    const w = await client.getWorkflow(id);
    if (w.state !== WorkflowState.WORKFLOW_STATE_RUNNING || signal.aborted) return w;
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** `taskmesh workflow submit <file|->`: prints the workflow's id; with `--wait`, waits until it ends and prints its graph; exit 0 only if it SUCCEEDED. */
export async function workflowSubmit(source: string, opts: { key?: string; continue?: boolean; wait?: boolean; json?: boolean; address?: string }, io: Io = stdio): Promise<number> {
  const request = readWorkflow(source);
  return withWorkflows(opts.address, async (client) => {
    const policy = opts.continue || request.failurePolicy === FailurePolicy.FAILURE_POLICY_CONTINUE ? "continue" : "fail-fast";
    const { deduplicated, ...submitted } = await client.submitWorkflow(tasksOf(request), {
      failurePolicy: policy, name: request.name, labels: request.labels, ...(opts.key ?? request.idempotencyKey ? { idempotencyKey: opts.key ?? request.idempotencyKey } : {}),
    });
    if (!opts.wait) {
      io.out(opts.json ? JSON.stringify(SubmitWorkflowResponse.toJSON({ workflow: submitted, deduplicated })) : `${submitted.id}${deduplicated ? " (deduplicated)" : ""}`);
      return 0;
    }
    const done = await interruptible(undefined, (signal) => untilDone(client, submitted.id, signal));
    if (opts.json) io.out(JSON.stringify(GetWorkflowResponse.toJSON({ workflow: done })));
    else for (const line of formatWorkflow(done)) io.out(line);
    return done.state === WorkflowState.WORKFLOW_STATE_SUCCEEDED ? 0 : 1;
  }, io);
}

/** `taskmesh workflow get <id>`: the workflow and each task's state. */
export async function workflowGet(id: string, opts: { json?: boolean; address?: string }, io: Io = stdio): Promise<number> {
  return withWorkflows(opts.address, async (client) => {
    const workflow = await client.getWorkflow(id);
    if (opts.json) io.out(JSON.stringify(GetWorkflowResponse.toJSON({ workflow })));
    else for (const line of formatWorkflow(workflow)) io.out(line);
    return 0;
  }, io);
}

/** `taskmesh workflow watch <id>`: the workflow, then one line per task's new state until it ends; exit 0 only if it SUCCEEDED. */
export async function workflowWatch(id: string, opts: { address?: string }, io: Io = stdio): Promise<number> {
  return withWorkflows(opts.address, (client) => interruptible(undefined, async (signal) => {
    let last: Workflow | undefined;
    try {
      for await (const event of client.watchWorkflow(id, { signal })) {
        if (event.type === "node") io.out(`  ${event.node.name}  ${paintState(event.node.state)}`);
        else {
          last = event.workflow;
          if (event.type === "snapshot") for (const line of formatWorkflow(event.workflow)) io.out(line);
          else io.out(formatWorkflow(event.workflow)[0]!);
        }
      }
    } catch (error) {
      if (!signal.aborted) throw error;
      return EXIT_INTERRUPTED;
    }
    return last?.state === WorkflowState.WORKFLOW_STATE_SUCCEEDED ? 0 : 1;
  }), io);
}

/** `taskmesh workflow cancel <id> [--reason R]`: cancels what has not finished; prints the workflow. */
export async function workflowCancel(id: string, opts: { reason?: string; json?: boolean; address?: string }, io: Io = stdio): Promise<number> {
  return withWorkflows(opts.address, async (client) => {
    const workflow = await client.cancelWorkflow(id, { reason: opts.reason ?? "" });
    if (opts.json) io.out(JSON.stringify(CancelWorkflowResponse.toJSON({ workflow })));
    else for (const line of formatWorkflow(workflow)) io.out(line);
    return 0;
  }, io);
}
