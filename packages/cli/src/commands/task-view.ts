/**
 * How `taskmesh task …` shows tasks to people: the key/value view, table
 * rows, one line per watch message, and the exit code a task's state means.
 * Colour only where picocolors allows it (a terminal, no NO_COLOR).
 */
import Table from "cli-table3";
import pc from "picocolors";
import type { WatchTaskResponse } from "@taskmesh/contracts/gen/taskmesh/coordinator/v1/task_service";
import { TaskState, TransitionKind, type Task, type TaskError, type TaskProgress, type TaskTransition } from "@taskmesh/contracts/gen/taskmesh/task/v1/task";
import { fixedPorts } from "@taskmesh/local/ports";

/** A state's short name, e.g. `RUNNING`. */
export function stateName(state: TaskState): string {
  return (TaskState[state] as string | undefined)?.replace(/^TASK_STATE_/, "") ?? String(state);
}

/** A state's short name, coloured by how it went. */
export function paintState(state: TaskState): string {
  const name = stateName(state);
  switch (state) {
    case TaskState.TASK_STATE_SUCCEEDED: return pc.green(name);
    case TaskState.TASK_STATE_FAILED:
    case TaskState.TASK_STATE_TIMED_OUT: return pc.red(name);
    case TaskState.TASK_STATE_CANCELLED: return pc.yellow(name);
    case TaskState.TASK_STATE_RUNNING: return pc.cyan(name);
    default: return name;
  }
}

/** The exit code for a task that ended (or stopped being followed) in `state`: 0 only when it SUCCEEDED. */
export function exitCodeFor(state: TaskState | undefined): number {
  return state === TaskState.TASK_STATE_SUCCEEDED ? 0 : 1;
}

/** A duration for people: `350ms`, `4.2s`, `3m05s`, `2h10m`. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.max(0, Math.round(ms))}ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)}s`;
  const s = Math.floor(ms / 1000);
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor(s / 60) % 60).padStart(2, "0")}m`;
}

/** An age in the largest whole unit: `12s`, `5m`, `3h`, `2d`. */
export function formatAge(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  return s < 60 ? `${s}s` : s < 3600 ? `${Math.floor(s / 60)}m` : s < 86_400 ? `${Math.floor(s / 3600)}h` : `${Math.floor(s / 86_400)}d`;
}

function formatError(error: TaskError): string {
  const details = error.details && Object.keys(error.details).length > 0 ? ` ${JSON.stringify(error.details)}` : "";
  return `${error.reason}: ${error.message}${error.retryable ? " (retryable)" : ""}${details}`;
}

/** A progress report: `42% message`. */
export function formatProgress(progress: TaskProgress): string {
  const percent = progress.percent === undefined ? "" : `${Number(progress.percent.toFixed(1))}% `;
  return `${percent}${progress.message}`.trim() || "(no message)";
}

/** A time with how long ago it was (or how soon it will be). */
function when(time: Date | undefined, now: Date): string | undefined {
  if (!time) return undefined;
  const ago = now.getTime() - time.getTime();
  return `${time.toISOString()} (${ago >= 0 ? `${formatAge(ago)} ago` : `in ${formatAge(-ago)}`})`;
}

const TERMINAL: ReadonlySet<TaskState> = new Set([TaskState.TASK_STATE_SUCCEEDED, TaskState.TASK_STATE_FAILED, TaskState.TASK_STATE_CANCELLED, TaskState.TASK_STATE_TIMED_OUT]);

function terminal(state: TaskState): boolean {
  return TERMINAL.has(state);
}

/** Jaeger's UI on this machine (the design's fixed port, TASKMESH_JAEGER_PORT), where `task get` links the task's trace. */
export function jaegerUi(): string {
  return `http://127.0.0.1:${fixedPorts().jaegerUi}`;
}

/** The `task get` view: one `key  value` line per field that has a value, and a link to the task's trace in Jaeger. */
export function formatTask(task: Task, now = new Date(), jaeger = jaegerUi()): string[] {
  const started = task.startedAt?.getTime();
  const duration = started === undefined ? undefined
    : task.finishedAt ? formatDuration(task.finishedAt.getTime() - started)
      : terminal(task.state) ? undefined : `${formatDuration(now.getTime() - started)} so far`;
  const labels = Object.entries(task.labels).map(([k, v]) => `${k}=${v}`).join(", ");
  const rows: Array<[string, string | undefined]> = [
    ["id", task.id],
    ["capability", task.capability],
    ["state", paintState(task.state)],
    ["attempts", `${task.attempts}/${task.maxAttempts}`],
    ["worker", task.workerId || undefined],
    ["created", when(task.createdAt, now)],
    ["started", when(task.startedAt, now)],
    ["finished", when(task.finishedAt, now)],
    ["duration", duration],
    ["next attempt", task.state === TaskState.TASK_STATE_PENDING ? when(task.nextAttemptAt, now) : undefined],
    ["input", task.input && JSON.stringify(task.input)],
    ["output", task.output && JSON.stringify(task.output)],
    ["error", task.error && pc.red(formatError(task.error))],
    ["progress", task.progress && formatProgress(task.progress)],
    ["sequence", String(task.sequence)],
    ["trace id", task.traceId || undefined],
    ["trace", task.traceId ? `${jaeger}/trace/${task.traceId}` : undefined],
    ["key", task.idempotencyKey || undefined],
    ["labels", labels || undefined],
  ];
  return rows.filter((row): row is [string, string] => row[1] !== undefined).map(([k, v]) => `${pc.dim(k.padEnd(13))}${v}`);
}

/** A `task list` row: id, capability, state, attempts, worker, age. */
export function taskRow(task: Task, now = new Date()): string[] {
  const age = task.createdAt ? formatAge(now.getTime() - task.createdAt.getTime()) : "-";
  return [task.id, task.capability, paintState(task.state), `${task.attempts}/${task.maxAttempts}`, task.workerId || "-", age];
}

function formatTransition(t: TaskTransition): string {
  const kind = (TransitionKind[t.kind] as string | undefined)?.replace(/^TRANSITION_KIND_/, "") ?? String(t.kind);
  const from = t.fromState === TaskState.TASK_STATE_UNSPECIFIED ? "" : stateName(t.fromState);
  const parts = [`seq ${t.sequence}`, kind, `${from}→${paintState(t.toState)}`];
  if (t.attempt > 0) parts.push(`attempt ${t.attempt}`);
  if (t.workerId) parts.push(`worker ${t.workerId}`);
  if (t.error) parts.push(pc.red(formatError(t.error)));
  if (t.nextAttemptAt && t.at) parts.push(`next attempt in ${formatDuration(t.nextAttemptAt.getTime() - t.at.getTime())}`);
  if (t.reason) parts.push(`(${t.reason})`);
  return parts.join(" ");
}

/** One `task watch` line: the snapshot, a transition (`seq 3 STARTED PENDING→RUNNING attempt 1 worker w1`) or progress (`42% message`). */
export function watchLine(message: WatchTaskResponse): string {
  const event = message.event;
  switch (event?.$case) {
    case "snapshot": {
      const t = event.value;
      const parts = [`snapshot seq ${t.sequence}`, paintState(t.state), `attempts ${t.attempts}/${t.maxAttempts}`];
      if (t.workerId) parts.push(`worker ${t.workerId}`);
      if (t.progress && !terminal(t.state)) parts.push(formatProgress(t.progress));
      return parts.join(" ");
    }
    case "transition": return formatTransition(event.value);
    case "progress": return event.value.progress ? formatProgress(event.value.progress) : "(progress)";
    default: return "(empty message)";
  }
}

/** A `task list` table of `tasks`. */
export function taskTable(tasks: readonly Task[], now: Date): string {
  const table = new Table({ head: ["id", "capability", "state", "attempts", "worker", "age"].map((h) => pc.cyan(h)), style: { head: [], border: [] } });
  for (const task of tasks) table.push(taskRow(task, now));
  return table.toString();
}
