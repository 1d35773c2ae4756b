import { isCapabilityName } from "@taskmesh/contracts";
import { createHash } from "node:crypto";
import { SubmitTaskRequest, SubmitWorkflowRequest, type ListTasksRequest } from "@taskmesh/contracts/gen/taskmesh/coordinator/v1/task_service";
import { FailurePolicy, TaskState, TaskView } from "@taskmesh/contracts/gen/taskmesh/task/v1/task";
import { graphViolations } from "@taskmesh/contracts/workflow";
import { Violations, parseItem, durationMs, invalidArgument, isUuid, type FieldViolation, type Reason } from "@taskmesh/kit";

/** Largest task input, as JSON. */
export const MAX_INPUT_BYTES = 256 * 1024;
/** Defaults of a submit, as the contract gives them. */
export const SUBMIT_DEFAULTS = { maxAttempts: 3, timeoutMs: 5 * 60_000 } as const;

export { isCapabilityName };
const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,128}$/;
const LABEL_KEY = /^[a-z0-9._/-]{1,63}$/;

/** A submit, validated, with defaults applied; what the ledger's CreateTask needs besides ids and trace. */
export interface ValidSubmit {
  readonly capability: string;
  readonly input: Record<string, unknown>;
  readonly idempotencyKey: string;
  readonly requestHash: string;
  readonly maxAttempts: number;
  readonly timeoutMs: number;
  readonly priority: number;
  readonly labels: Record<string, string>;
  readonly retryPolicy: SubmitTaskRequest["retryPolicy"];
}

/** JSON with object keys sorted at every level: one text per value. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => (v && typeof v === "object" && !Array.isArray(v)
    ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
    : v));
}

/**
 * The submit's fingerprint: lower-case hex SHA-256 of its canonical proto3
 * JSON with `idempotencyKey` left out, so a repeat of the same request under
 * one key matches and any other field's change does not.
 */
export function requestHash(request: SubmitTaskRequest): string {
  const { idempotencyKey: _key, ...rest } = SubmitTaskRequest.toJSON(request) as Record<string, unknown>;
  return createHash("sha256").update(canonicalJson(rest)).digest("hex");
}

/**
 * Checks a submit against the contract; INVALID_ARGUMENT with one violation
 * per bad field (nothing is stored). `isKnown` says whether a well-formed
 * capability is one taskmesh can run.
 */
export function parseSubmit(r: SubmitTaskRequest, isKnown: (capability: string) => boolean): ValidSubmit {
  const v = new Violations();
  if (!isCapabilityName(r.capability)) v.add("capability", "must be 1..63 characters of a-z 0-9 . _ -, starting with a letter");
  else if (!isKnown(r.capability)) v.add("capability", `unknown capability ${JSON.stringify(r.capability)}: no worker declares it and it is not configured`, "VAL_UNKNOWN_CAPABILITY");
  const input = r.input ?? {};
  if (Buffer.byteLength(JSON.stringify(input)) > MAX_INPUT_BYTES) v.add("input", `is larger than ${MAX_INPUT_BYTES / 1024} KiB as JSON`, "VAL_INPUT_TOO_LARGE");
  if (r.idempotencyKey !== "" && !IDEMPOTENCY_KEY.test(r.idempotencyKey)) v.add("idempotency_key", "must be 1..128 printable ASCII characters without spaces");
  const policy = r.retryPolicy;
  const policyAttempts = policy?.maxAttempts ?? 0;
  if (r.maxAttempts !== undefined && (r.maxAttempts < 1 || r.maxAttempts > 100)) v.add("max_attempts", "must be between 1 and 100");
  if (policyAttempts !== 0 && (policyAttempts < 1 || policyAttempts > 100)) v.add("retry_policy.max_attempts", "must be between 1 and 100 (or 0 for the default)");
  if (r.maxAttempts !== undefined && policyAttempts !== 0 && policyAttempts !== r.maxAttempts) v.add("retry_policy.max_attempts", "must equal max_attempts when both are set");
  const timeoutMs = durationMs(r.timeout) ?? SUBMIT_DEFAULTS.timeoutMs;
  if (!(timeoutMs >= 1000 && timeoutMs <= 86_400_000)) v.add("timeout", "must be between 1s and 24h");
  if (!Number.isInteger(r.priority) || r.priority < 0 || r.priority > 9) v.add("priority", "must be between 0 and 9");
  const labels = Object.entries(r.labels);
  if (labels.length > 32) v.add("labels", "has more than 32 labels");
  for (const [key, value] of labels) {
    if (!LABEL_KEY.test(key)) v.add(`labels[${key}]`, "key must be 1..63 characters of a-z 0-9 . _ / -");
    else if (value.length > 256) v.add(`labels[${key}]`, "value is longer than 256 characters");
  }
  for (const [field, d] of [["retry_policy.initial_backoff", policy?.initialBackoff], ["retry_policy.max_backoff", policy?.maxBackoff]] as const) {
    const ms = durationMs(d);
    if (ms !== undefined && !(ms >= 0 && ms <= 3_600_000)) v.add(field, "must be between 0s and 1h");
  }
  const multiplier = policy?.multiplier ?? 0;
  if (multiplier !== 0 && !(multiplier >= 1 && multiplier <= 10)) v.add("retry_policy.multiplier", "must be between 1.0 and 10.0 (0 for 2.0)");
  v.check();
  const maxAttempts = r.maxAttempts ?? (policyAttempts || SUBMIT_DEFAULTS.maxAttempts);
  return {
    capability: r.capability,
    input,
    idempotencyKey: r.idempotencyKey,
    requestHash: requestHash(r),
    maxAttempts,
    timeoutMs,
    priority: r.priority,
    labels: r.labels,
    retryPolicy: { initialBackoff: policy?.initialBackoff, maxBackoff: policy?.maxBackoff, multiplier: policy?.multiplier ?? 0, maxAttempts },
  };
}

/** A task id (a UUID), or INVALID_ARGUMENT (VAL_INVALID_TASK_ID). */
export function parseTaskId(id: string, field = "id"): string {
  if (!isUuid(id)) throw invalidArgument([{ field, description: "must be a task id (a lower-case UUID)", reason: "VAL_INVALID_TASK_ID" }], "VAL_INVALID_TASK_ID");
  return id;
}

/** A workflow submit, validated: each task as a submit, and the graph. */
export interface ValidWorkflow {
  readonly name: string;
  readonly failurePolicy: FailurePolicy;
  readonly idempotencyKey: string;
  readonly requestHash: string;
  readonly labels: Record<string, string>;
  readonly tasks: ReadonlyArray<{ readonly name: string; readonly dependsOn: readonly string[]; readonly submit: ValidSubmit }>;
}

/** The workflow submit's fingerprint, as {@link requestHash}'s for a task. */
export function workflowRequestHash(request: SubmitWorkflowRequest): string {
  const { idempotencyKey: _key, ...rest } = SubmitWorkflowRequest.toJSON(request) as Record<string, unknown>;
  return createHash("sha256").update(canonicalJson(rest)).digest("hex");
}

/**
 * Checks a workflow submit: every task as SubmitTask would (its violations
 * under `tasks[i].task`), names, dependencies, references and cycles
 * (@taskmesh/contracts/workflow), and the workflow's own fields;
 * INVALID_ARGUMENT with every violation found (VAL_WORKFLOW_CYCLE when a
 * cycle is among them), nothing stored.
 */
export function parseSubmitWorkflow(r: SubmitWorkflowRequest, isKnown: (capability: string) => boolean): ValidWorkflow {
  const found: FieldViolation[] = [...graphViolations(r.tasks.map((t) => ({ name: t.name, dependsOn: t.dependsOn, input: t.task?.input })))];
  const own = new Violations();
  if (typeof FailurePolicy[r.failurePolicy] !== "string") own.add("failure_policy", `unknown failure policy ${r.failurePolicy}`);
  if (r.idempotencyKey !== "" && !IDEMPOTENCY_KEY.test(r.idempotencyKey)) own.add("idempotency_key", "must be 1..128 printable ASCII characters without spaces");
  if (r.name.length > 256) own.add("name", "is longer than 256 characters");
  const labels = Object.entries(r.labels);
  if (labels.length > 32) own.add("labels", "has more than 32 labels");
  for (const [key, value] of labels) if (!LABEL_KEY.test(key) || value.length > 256) own.add(`labels[${key}]`, "key must be 1..63 characters of a-z 0-9 . _ / -, value at most 256 characters");
  found.push(...own.all);
  const submits = r.tasks.length > 10_000 ? [] : r.tasks.map((t, i) => {
    const field = `tasks[${i}].task`;
    if (!t.task) {
      found.push({ field, description: "is required" });
      return undefined;
    }
    if (t.task.idempotencyKey !== "") found.push({ field: `${field}.idempotency_key`, description: "must be empty: the workflow's idempotency key covers its tasks" });
    const task = t.task;
    return parseItem(field, found, () => parseSubmit(task, isKnown));
  });
  if (found.length > 0) {
    const reason = found.find((f) => f.reason === "VAL_WORKFLOW_CYCLE")?.reason ?? found.find((f) => f.reason && f.reason !== "VAL_INVALID_ARGUMENT")?.reason ?? "VAL_INVALID_ARGUMENT";
    throw invalidArgument(found, reason as Reason);
  }
  return {
    name: r.name,
    failurePolicy: r.failurePolicy === FailurePolicy.FAILURE_POLICY_CONTINUE ? FailurePolicy.FAILURE_POLICY_CONTINUE : FailurePolicy.FAILURE_POLICY_FAIL_FAST,
    idempotencyKey: r.idempotencyKey, requestHash: workflowRequestHash(r), labels: r.labels,
    tasks: r.tasks.map((t, i) => ({ name: t.name, dependsOn: t.dependsOn, submit: submits[i]! })),
  };
}

/** A workflow id (a UUID), or INVALID_ARGUMENT (VAL_INVALID_WORKFLOW_ID). */
export function parseWorkflowId(id: string, field = "id"): string {
  if (!isUuid(id)) throw invalidArgument([{ field, description: "must be a workflow id (a lower-case UUID)", reason: "VAL_INVALID_WORKFLOW_ID" }], "VAL_INVALID_WORKFLOW_ID");
  return id;
}

/** Checks what the ledger does not know about a list request (its view and filters go through unchanged). */
export function checkList(r: ListTasksRequest): void {
  const v = new Violations();
  r.states.forEach((s, i) => { if (typeof TaskState[s] !== "string" || s === TaskState.TASK_STATE_UNSPECIFIED) v.add(`states[${i}]`, `unknown state ${s}`); });
  if (r.capability !== "" && !isCapabilityName(r.capability)) v.add("capability", "is not a capability name");
  if (typeof TaskView[r.view] !== "string") v.add("view", `unknown view ${r.view}`);
  if (r.pageSize < 0 || r.pageSize > 1000) v.add("page_size", "must be between 1 and 1000 (0 for 100)", "VAL_INVALID_PAGE_SIZE");
  if (r.createdAfter && r.createdBefore && r.createdAfter >= r.createdBefore) v.add("created_before", "must be after created_after", "VAL_INVALID_TIME_RANGE");
  if (r.workflowId !== "" && !isUuid(r.workflowId)) v.add("workflow_id", "must be a workflow id (a lower-case UUID), or empty", "VAL_INVALID_WORKFLOW_ID");
  if (r.parentId !== "" && !isUuid(r.parentId)) v.add("parent_id", "must be a task id (a lower-case UUID), or empty", "VAL_INVALID_TASK_ID");
  v.check();
}
