/**
 * The command line of `taskmesh task …`: turns what the user typed into
 * TaskService requests, or a UsageError (exit 2) before any call.
 */
import type { Duration } from "@taskmesh/contracts/gen/google/protobuf/duration";
import type { ListTasksRequest, SubmitTaskRequest, WatchTaskRequest } from "@taskmesh/contracts/gen/taskmesh/coordinator/v1/task_service";
import { TaskState, TaskView } from "@taskmesh/contracts/gen/taskmesh/task/v1/task";
import { parseDuration } from "@taskmesh/kit/env";
import { UsageError } from "@taskmesh/local/usage-error";

/** The states `--state` accepts, case-insensitively, with or without `TASK_STATE_`. */
export const STATE_NAMES = ["pending", "running", "succeeded", "failed", "cancelled", "timed_out"] as const;

/** A duration such as `500ms`, `30s`, `1.5m` or `2h`, in ms; the unit is required. */
export function parseDurationArg(flag: string, text: string): number {
  const ms = /[a-z]\s*$/i.test(text) ? parseDuration(text) : undefined;
  if (ms === undefined) throw new UsageError(`${flag}: expected a duration like 500ms, 30s, 5m, 2h or 7d, got ${JSON.stringify(text)}`);
  return ms;
}

/** A whole number (an int32) of at least `min`. */
export function parseWholeNumber(flag: string, text: string, min = 0): number {
  const n = /^\s*\d+\s*$/.test(text) ? Number(text) : Number.NaN;
  if (!(n >= min && n <= 2 ** 31 - 1)) throw new UsageError(`${flag}: expected a whole number${min > 0 ? ` of at least ${min}` : ""}, got ${JSON.stringify(text)}`);
  return n;
}

/** An ISO 8601 time such as `2026-11-25T12:00:00Z`. */
export function parseTime(flag: string, text: string): Date {
  const time = /^\d{4}-\d{2}-\d{2}/.test(text.trim()) ? new Date(text) : new Date(Number.NaN);
  if (Number.isNaN(time.getTime())) throw new UsageError(`${flag}: expected an ISO 8601 time like 2026-11-25T12:00:00Z, got ${JSON.stringify(text)}`);
  return time;
}

/** `--label k=v` given any number of times; the value may be empty or hold `=`. */
export function parseLabels(items: readonly string[]): Record<string, string> {
  const labels = new Map<string, string>();
  for (const item of items) {
    const at = item.indexOf("=");
    if (at <= 0) throw new UsageError(`--label: expected key=value, got ${JSON.stringify(item)}`);
    const key = item.slice(0, at);
    if (labels.has(key)) throw new UsageError(`--label: ${key} is given twice`);
    labels.set(key, item.slice(at + 1));
  }
  return Object.fromEntries(labels);
}

/** `--state` names (repeated or comma-separated): `running`, `TIMED_OUT`, `task_state_failed`… */
export function parseStates(items: readonly string[]): TaskState[] {
  const states: TaskState[] = [];
  for (const name of items.flatMap((item) => item.split(",")).map((s) => s.trim()).filter(Boolean)) {
    const short = name.toUpperCase().replaceAll("-", "_").replace(/^TASK_STATE_/, "");
    const state: unknown = TaskState[`TASK_STATE_${short}` as keyof typeof TaskState];
    if (typeof state !== "number" || state === TaskState.TASK_STATE_UNSPECIFIED) {
      throw new UsageError(`--state: unknown state ${JSON.stringify(name)} (one of ${STATE_NAMES.join(", ")})`);
    }
    if (!states.includes(state)) states.push(state);
  }
  return states;
}

/** The task input: a JSON object (a `google.protobuf.Struct`); absent means `{}`. */
export function parseInput(text: string | undefined): Record<string, unknown> | undefined {
  if (text === undefined) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new UsageError(`input: not valid JSON (${(error as Error).message})`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new UsageError(`input: expected a JSON object like '{"text":"hi"}', got ${text}`);
  }
  return value as Record<string, unknown>;
}

/** Milliseconds as a `google.protobuf.Duration`. */
function durationOf(ms: number): Duration {
  return { seconds: BigInt(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 };
}

/** Options of `task submit`, as commander gives them. */
export interface SubmitOptions {
  key?: string; maxAttempts?: string; timeout?: string; priority?: string; label?: string[];
  wait?: boolean; json?: boolean; address?: string;
}

/** The SubmitTask request `task submit` sends. */
export function submitRequest(capability: string, input: string | undefined, opts: SubmitOptions): SubmitTaskRequest {
  return {
    capability,
    input: parseInput(input),
    idempotencyKey: opts.key ?? "",
    maxAttempts: opts.maxAttempts === undefined ? undefined : parseWholeNumber("--max-attempts", opts.maxAttempts, 1),
    timeout: opts.timeout === undefined ? undefined : durationOf(parseDurationArg("--timeout", opts.timeout)),
    priority: opts.priority === undefined ? 0 : parseWholeNumber("--priority", opts.priority),
    labels: parseLabels(opts.label ?? []),
    retryPolicy: undefined,
  };
}

/** Options of `task list`. */
export interface ListOptions {
  state?: string[]; capability?: string; workflow?: string; parent?: string; since?: string; after?: string; limit?: string; pageToken?: string;
  json?: boolean; address?: string;
}

/** The ListTasks request `task list` sends; `--since` counts back from `now`. */
export function listRequest(opts: ListOptions, now = new Date()): ListTasksRequest {
  if (opts.since !== undefined && opts.after !== undefined) throw new UsageError("--since and --after: give one or the other");
  const createdAfter = opts.since !== undefined ? new Date(now.getTime() - parseDurationArg("--since", opts.since))
    : opts.after !== undefined ? parseTime("--after", opts.after) : undefined;
  return {
    states: parseStates(opts.state ?? []),
    capability: opts.capability ?? "",
    createdAfter,
    createdBefore: undefined,
    workflowId: opts.workflow ?? "",
    parentId: opts.parent ?? "",
    pageSize: opts.limit === undefined ? 0 : parseWholeNumber("--limit", opts.limit, 1),
    pageToken: opts.pageToken ?? "",
    view: TaskView.TASK_VIEW_UNSPECIFIED,
  };
}

/** Options of `task watch`. */
export interface WatchOptions { afterSequence?: string; json?: boolean; address?: string }

/** The WatchTask request `task watch` sends. */
export function watchRequest(id: string, opts: WatchOptions): WatchTaskRequest {
  const after = opts.afterSequence === undefined ? undefined : parseWholeNumber("--after-sequence", opts.afterSequence);
  return { id, afterSequence: after === undefined ? undefined : BigInt(after) };
}
