import { isCapabilityName, isReason } from "@taskmesh/contracts";
import type { Duration } from "@taskmesh/contracts/gen/google/protobuf/duration";
import type { CreateTaskRequest } from "@taskmesh/contracts/gen/taskmesh/ledger/v1/ledger";
import { TaskState, TaskView, type TaskError, type TaskProgress } from "@taskmesh/contracts/gen/taskmesh/task/v1/task";
import { WorkerState } from "@taskmesh/contracts/gen/taskmesh/worker/v1/worker";
import { Violations, invalidArgument, type Reason } from "@taskmesh/kit";
import { isUuid, isUuidV7 } from "./ids.js";
import { durationMs } from "./records.js";
import type { StoredError, StoredProgress } from "./sql/tasks.js";

/** Largest input or output, as JSON. */
export const MAX_PAYLOAD_BYTES = 256 * 1024;
/** Largest error or progress details, as JSON. */
export const MAX_DETAILS_BYTES = 64 * 1024;
/** Longest reason of a cancel or release. */
export const MAX_REASON_CHARS = 256;
/** Lease lengths: 1s..10m. */
export const LEASE_MS = { min: 1000, max: 600_000 } as const;
/** Retry policy defaults, as the contract gives them. */
export const RETRY_DEFAULTS = { initialBackoffMs: 1000, maxBackoffMs: 60_000, multiplier: 2 } as const;

export const LABEL_KEY = /^[a-z0-9._\/-]{1,63}$/;
export const HEX64 = /^[0-9a-f]{64}$/;
export const TRACE_ID = /^[0-9a-f]{32}$/;

export { Violations };

/** Bytes of a value as JSON. */
function jsonBytes(value: unknown): number {
  return value === undefined ? 0 : Buffer.byteLength(JSON.stringify(value));
}

/** A task id, or INVALID_ARGUMENT (`VAL_INVALID_TASK_ID`). */
export function parseTaskId(id: string, field = "id"): string {
  if (!isUuid(id)) throw invalidArgument([{ field, description: "must be a task id (a lower-case UUID)", reason: "VAL_INVALID_TASK_ID" }], "VAL_INVALID_TASK_ID");
  return id;
}

function isEnumValue(e: Record<string, string | number>, value: number): boolean {
  return typeof e[value] === "string";
}

/** Checks a view value; returns the view with the given default for UNSPECIFIED. */
export function parseView(view: TaskView, fallback: TaskView, v: Violations, field = "view"): TaskView {
  if (!isEnumValue(TaskView, view)) {
    v.add(field, `unknown view ${view}`);
    return fallback;
  }
  return view === TaskView.TASK_VIEW_UNSPECIFIED ? fallback : view;
}

/** A duration in ms within bounds; adds a violation otherwise. */
export function boundedMs(d: Duration | undefined, min: number, max: number, field: string, v: Violations, required = true): number | undefined {
  const ms = durationMs(d);
  if (ms === undefined) {
    if (required) v.add(field, "is required");
    return undefined;
  }
  if (!Number.isFinite(ms) || ms < min || ms > max) v.add(field, `must be between ${min / 1000}s and ${max / 1000}s`);
  return ms;
}

/** A create request, validated, with the retry policy's defaults applied. */
export interface NewTask {
  readonly id: string | null;
  readonly capability: string;
  readonly input: Record<string, unknown>;
  readonly idempotencyKey: string;
  readonly requestHash: string;
  readonly maxAttempts: number;
  readonly timeoutMs: number;
  readonly priority: number;
  readonly labels: Record<string, string>;
  readonly retryInitialMs: number;
  readonly retryMaxMs: number;
  readonly retryMultiplier: number;
  readonly createdBy: string;
  readonly traceId: string;
  readonly traceparent: string;
  /** Sync match: the worker the new task is leased to at its insert (when CONNECTED), and for how long; null for none. */
  readonly leaseTo: { readonly workerId: string; readonly leaseMs: number } | null;
}

/** Validates a CreateTask request; INVALID_ARGUMENT with every violation found, nothing stored. */
export function parseCreate(r: CreateTaskRequest): NewTask {
  const v = new Violations();
  if (r.id !== "" && !isUuidV7(r.id)) v.add("id", "must be a UUIDv7 in canonical lower-case form, or empty", "VAL_INVALID_TASK_ID");
  if (!isCapabilityName(r.capability)) v.add("capability", "must be 1..63 characters of a-z 0-9 . _ -, starting with a letter");
  const input = r.input ?? {};
  if (jsonBytes(input) > MAX_PAYLOAD_BYTES) v.add("input", `is larger than ${MAX_PAYLOAD_BYTES} bytes as JSON`, "VAL_INPUT_TOO_LARGE");
  if (r.idempotencyKey.length > 256) v.add("idempotency_key", "is longer than 256 characters");
  if (!HEX64.test(r.requestHash)) v.add("request_hash", "must be the lower-case hex SHA-256 of the submit");
  if (!Number.isInteger(r.maxAttempts) || r.maxAttempts < 1 || r.maxAttempts > 100) v.add("max_attempts", "must be between 1 and 100");
  const timeoutMs = boundedMs(r.timeout, 1000, 86_400_000, "timeout", v) ?? 0;
  if (!Number.isInteger(r.priority) || r.priority < 0 || r.priority > 9) v.add("priority", "must be between 0 and 9");
  const labels = Object.entries(r.labels);
  if (labels.length > 32) v.add("labels", "has more than 32 labels");
  for (const [key, value] of labels) {
    if (!LABEL_KEY.test(key)) v.add(`labels[${key}]`, "key must be 1..63 characters of a-z 0-9 . _ / -");
    else if (value.length > 256) v.add(`labels[${key}]`, "value is longer than 256 characters");
  }
  const p = r.retryPolicy;
  if (p && p.maxAttempts !== 0 && p.maxAttempts !== r.maxAttempts) v.add("retry_policy.max_attempts", "must equal max_attempts (or be 0)");
  const retryInitialMs = boundedMs(p?.initialBackoff, 0, 3_600_000, "retry_policy.initial_backoff", v, false) ?? RETRY_DEFAULTS.initialBackoffMs;
  const retryMaxMs = boundedMs(p?.maxBackoff, 0, 3_600_000, "retry_policy.max_backoff", v, false) ?? Math.max(RETRY_DEFAULTS.maxBackoffMs, retryInitialMs);
  if (retryMaxMs < retryInitialMs) v.add("retry_policy.max_backoff", "must be at least initial_backoff");
  const multiplier = p?.multiplier ?? 0;
  if (multiplier !== 0 && !(multiplier >= 1 && multiplier <= 10)) v.add("retry_policy.multiplier", "must be between 1.0 and 10.0 (0 for 2.0)");
  if (r.createdBy.length > 256) v.add("created_by", "is longer than 256 characters");
  if (r.traceId !== "" && !TRACE_ID.test(r.traceId)) v.add("trace_id", "must be 32 lower-case hex digits, or empty");
  if (r.traceparent.length > 256) v.add("traceparent", "is longer than 256 characters");
  if (r.leaseToWorkerId.length > 256) v.add("lease_to_worker_id", "is longer than 256 characters");
  if (r.leaseToWorkerId === "" && r.leaseDuration !== undefined) v.add("lease_duration", "is only for a create with lease_to_worker_id");
  const leaseMs = r.leaseToWorkerId === "" ? 0 : boundedMs(r.leaseDuration, LEASE_MS.min, LEASE_MS.max, "lease_duration", v) ?? 0;
  v.check();
  return {
    id: r.id === "" ? null : r.id,
    capability: r.capability,
    input,
    idempotencyKey: r.idempotencyKey,
    requestHash: r.requestHash,
    maxAttempts: r.maxAttempts,
    timeoutMs,
    priority: r.priority,
    labels: r.labels,
    retryInitialMs,
    retryMaxMs,
    retryMultiplier: multiplier === 0 ? RETRY_DEFAULTS.multiplier : multiplier,
    createdBy: r.createdBy,
    traceId: r.traceId,
    traceparent: r.traceparent,
    leaseTo: r.leaseToWorkerId === "" ? null : { workerId: r.leaseToWorkerId, leaseMs },
  };
}

/** Checks the task and lease ids of a worker-side call. */
export function checkLeaseCall(taskId: string, leaseId: string, v: Violations): void {
  if (!isUuid(taskId)) v.add("task_id", "must be a task id (a lower-case UUID)", "VAL_INVALID_TASK_ID");
  if (!isUuid(leaseId)) v.add("lease_id", "must be a lease id (a lower-case UUID)");
}

/** Checks an `expected_sequence`. */
export function checkSequence(seq: bigint | undefined, v: Violations, field = "expected_sequence", reason: Reason = "VAL_INVALID_ARGUMENT"): void {
  if (seq !== undefined && seq < 1n) v.add(field, "must be at least 1", reason);
}

/** A worker-sent error, normalized: a reason not of the UPPER_SNAKE class form becomes BIZ_HANDLER_FAILED. */
export function parseTaskError(e: TaskError | undefined, v: Violations): StoredError {
  if (!e) {
    v.add("error", "is required");
    return { reason: "BIZ_HANDLER_FAILED", message: "", retryable: false };
  }
  if (Buffer.byteLength(e.message) > 4096) v.add("error.message", "is longer than 4 KiB");
  if (jsonBytes(e.details) > MAX_DETAILS_BYTES) v.add("error.details", `is larger than ${MAX_DETAILS_BYTES} bytes as JSON`);
  return {
    reason: isReason(e.reason) ? e.reason : "BIZ_HANDLER_FAILED",
    message: e.message,
    retryable: e.retryable,
    ...(e.details ? { details: e.details } : {}),
  };
}

/** A progress report, validated (attempt and time are set by the store). */
export function parseProgress(p: TaskProgress | undefined, v: Violations): Omit<StoredProgress, "attempt" | "reported_at"> {
  if (!p) {
    v.add("progress", "is required");
    return { message: "" };
  }
  if (p.percent !== undefined && !(p.percent >= 0 && p.percent <= 100)) v.add("progress.percent", "must be between 0 and 100");
  if (Buffer.byteLength(p.message) > 1024) v.add("progress.message", "is longer than 1 KiB");
  if (jsonBytes(p.details) > MAX_DETAILS_BYTES) v.add("progress.details", `is larger than ${MAX_DETAILS_BYTES} bytes as JSON`);
  return { ...(p.percent !== undefined ? { percent: p.percent } : {}), message: p.message, ...(p.details ? { details: p.details } : {}) };
}

/** Checks an output's size. */
export function checkOutput(output: Record<string, unknown> | undefined, v: Violations): Record<string, unknown> {
  if (jsonBytes(output) > MAX_PAYLOAD_BYTES) v.add("output", `is larger than ${MAX_PAYLOAD_BYTES} bytes as JSON`, "VAL_OUTPUT_TOO_LARGE");
  return output ?? {};
}

/** A maintenance limit: 1..1000, 100 for 0; INVALID_ARGUMENT (`VAL_INVALID_LIMIT`) otherwise. */
export function parseLimit(limit: number): number {
  if (limit === 0) return 100;
  if (!Number.isInteger(limit) || limit < 1 || limit > 1000) {
    throw invalidArgument([{ field: "limit", description: "must be between 1 and 1000 (0 for 100)", reason: "VAL_INVALID_LIMIT" }], "VAL_INVALID_LIMIT");
  }
  return limit;
}

/** Checks task state filters: known, specified values. */
export function checkStates(states: TaskState[], v: Violations, field = "states"): void {
  states.forEach((s, i) => {
    if (!isEnumValue(TaskState, s) || s === TaskState.TASK_STATE_UNSPECIFIED) v.add(`${field}[${i}]`, `unknown task state ${s}`);
  });
}

/** Checks worker state filters. */
export function checkWorkerStates(states: WorkerState[], v: Violations, field = "states"): void {
  states.forEach((s, i) => {
    if (!isEnumValue(WorkerState, s) || s === WorkerState.WORKER_STATE_UNSPECIFIED) v.add(`${field}[${i}]`, `unknown worker state ${s}`);
  });
}

/** Checks capability filters. */
export function checkCapabilities(capabilities: string[], v: Violations, field = "capabilities"): void {
  capabilities.forEach((c, i) => {
    if (!isCapabilityName(c)) v.add(`${field}[${i}]`, "is not a capability name");
  });
}

/** True for a capability name. */
export function isCapability(c: string): boolean {
  return isCapabilityName(c);
}
