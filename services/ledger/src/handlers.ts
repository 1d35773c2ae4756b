import type { LedgerServiceService } from "../../../gen/taskmesh/ledger/v1/ledger.js";
import { TaskView } from "../../../gen/taskmesh/task/v1/task.js";
import { WorkerState } from "../../../gen/taskmesh/worker/v1/worker.js";
import { MeshError, decodePageToken, encodePageToken, invalidArgument, pageSize, toRpcStatus, type CallContext, type ServiceHandlers } from "../../kit/src/index.js";
import { taskNotFound } from "./errors.js";
import { isUuid } from "./ids.js";
import { stateName, toTask, toTransition, toWorker } from "./records.js";
import type { QueueStore } from "./queue-store.js";
import type { LeaseCall, LedgerStore, TaskFilter } from "./store.js";
import type { TaskRow } from "./sql/tasks.js";
import type { Committed } from "./writer.js";
import {
  LEASE_MS, MAX_REASON_CHARS, Violations, boundedMs, checkCapabilities, checkLeaseCall, checkOutput, checkSequence, checkStates,
  checkWorkerStates, isCapability, parseCreate, parseLimit, parseProgress, parseTaskError, parseTaskId, parseView, type NewTask,
} from "./validation.js";
import type { WorkerStore } from "./worker-store.js";

const MAX_SEQUENCE = 9_223_372_036_854_775_807n;

/** The page-token scope of a query: its filters, so a token only fits the query it came from. */
function scopeOf(kind: string, filters: unknown): string {
  return `${kind}:${JSON.stringify(filters, (_, v: unknown) => (typeof v === "bigint" ? v.toString() : v))}`;
}

/** Methods that may commit outbox rows. */
const WRITES = new Set(["createTask", "createTasks", "completeTasks", "startTask", "recordProgress", "completeTask", "failTask", "cancelTask", "releaseTask", "expireLeases", "reapTimeouts", "markWorkerGone"]);

/**
 * The LedgerService handlers over the task, queue and worker stores;
 * `afterWrite` runs after every call that may have committed outbox rows
 * (the ledger nudges its outbox relay with it).
 */
export function ledgerHandlers(store: LedgerStore, queue: QueueStore, workers: WorkerStore, afterWrite?: () => void): ServiceHandlers<typeof LedgerServiceService> {
  const handlers = baseHandlers(store, queue, workers);
  if (!afterWrite) return handlers;
  const wrapped: Record<string, unknown> = { ...handlers };
  for (const name of WRITES) {
    const handler = handlers[name as keyof typeof handlers] as (...args: unknown[]) => Promise<unknown>;
    wrapped[name] = async (...args: unknown[]) => {
      const result = await handler(...args);
      afterWrite();
      return result;
    };
  }
  return wrapped as ServiceHandlers<typeof LedgerServiceService>;
}

/** The most items of one batch call. */
const MAX_BATCH = 1000;

function checkBatch(items: readonly unknown[]): void {
  if (items.length === 0 || items.length > MAX_BATCH) throw invalidArgument([{ field: "tasks", description: `must hold 1..${MAX_BATCH} items` }]);
}

/** One item's answer in a batch response: the response, or the error as `google.rpc.Status`. */
function itemResult<R>(outcome: R | MeshError): { $case: "response"; value: R } | { $case: "error"; value: ReturnType<typeof toRpcStatus> } {
  return outcome instanceof MeshError ? { $case: "error", value: toRpcStatus(outcome) } : { $case: "response", value: outcome };
}

/** How a batch call reports that its items had to run one by one. */
function fallback(ctx: CallContext): { signal: AbortSignal; onFallback: (error: unknown) => void } {
  return { signal: ctx.signal, onFallback: (error) => ctx.log.warn({ err: error }, "a batch failed as a whole; its items ran one by one") };
}

/** Validates `item` with `parse`; its INVALID_ARGUMENT becomes its own answer instead of the batch's. */
function parsed<T>(parse: () => T): T | MeshError {
  try {
    return parse();
  } catch (error) {
    if (error instanceof MeshError) return error;
    throw error;
  }
}

function baseHandlers(store: LedgerStore, queue: QueueStore, workers: WorkerStore): ServiceHandlers<typeof LedgerServiceService> {
  return {
    async createTasks(request, ctx) {
      checkBatch(request.tasks);
      const inputs = request.tasks.map((t) => parsed(() => parseCreate(t)));
      const valid = inputs.filter((n): n is NewTask => !(n instanceof MeshError));
      const answer = (r: { row: TaskRow; created: boolean } | MeshError) => (r instanceof MeshError ? r : { task: toTask(r.row), created: r.created });
      const done = (await store.batched(valid, (items) => store.createMany(items, ctx.signal), (n) => store.create(n, ctx.signal), fallback(ctx))).map(answer);
      let next = 0;
      return { results: inputs.map((n) => ({ result: itemResult(n instanceof MeshError ? n : done[next++]!) })) };
    },

    async completeTasks(request, ctx) {
      checkBatch(request.tasks);
      const inputs = request.tasks.map((r) => parsed(() => {
        const v = new Violations();
        const call = leaseCall(r, v);
        const output = checkOutput(r.output, v);
        v.check();
        return { call, output };
      }));
      const valid = inputs.filter((i): i is Exclude<typeof i, MeshError> => !(i instanceof MeshError));
      const answer = (r: Committed | MeshError) => (r instanceof MeshError ? r : { task: toTask(r.row), transition: r.transition });
      const done = (await store.batched(valid, (items) => store.completeMany(items, ctx.signal), (i) => store.complete(i.call, i.output, ctx.signal), fallback(ctx))).map(answer);
      let next = 0;
      return { results: inputs.map((i) => ({ result: itemResult(i instanceof MeshError ? i : done[next++]!) })) };
    },

    async createTask(request, ctx) {
      const { row, created } = await store.create(parseCreate(request), ctx.signal);
      return { task: toTask(row), created };
    },

    async getTask(request, ctx) {
      const id = parseTaskId(request.id);
      const v = new Violations();
      const view = parseView(request.view, TaskView.TASK_VIEW_FULL, v);
      v.check();
      const row = await store.get(id, ctx.signal);
      if (!row) throw taskNotFound(id);
      return { task: toTask(row, view) };
    },

    async listTasks(request, ctx) {
      const v = new Violations();
      checkStates(request.states, v);
      checkCapabilities(request.capabilities, v);
      if (request.workerId.length > 256) v.add("worker_id", "is longer than 256 characters");
      if (request.createdAfter && request.createdBefore && request.createdAfter >= request.createdBefore) {
        v.add("created_before", "must be after created_after", "VAL_INVALID_TIME_RANGE");
      }
      const view = parseView(request.view, TaskView.TASK_VIEW_BASIC, v);
      v.check();
      const limit = pageSize(request.pageSize);
      const filter: TaskFilter = {
        states: [...new Set(request.states.map(stateName))],
        capabilities: [...new Set(request.capabilities)],
        createdAfter: request.createdAfter ?? null,
        createdBefore: request.createdBefore ?? null,
        workerId: request.workerId,
        createdBy: request.createdBy,
      };
      const scope = scopeOf("tasks", filter);
      const cursor = decodePageToken(request.pageToken, scope);
      if (cursor !== undefined && (typeof cursor !== "string" || !isUuid(cursor))) {
        throw invalidArgument([{ field: "page_token", description: "not a page token of this query" }], "VAL_INVALID_PAGE_TOKEN");
      }
      const rows = await store.list(filter, cursor ?? null, limit + 1, ctx.signal);
      const page = rows.slice(0, limit);
      return {
        tasks: page.map((r) => toTask(r, view)),
        nextPageToken: rows.length > limit ? encodePageToken(scope, page[page.length - 1]!.id) : "",
      };
    },

    async countTasks(request, ctx) {
      const v = new Violations();
      checkCapabilities(request.capabilities, v);
      v.check();
      const { total, byCapability } = await store.count([...new Set(request.capabilities)], request.createdAfter ?? null, ctx.signal);
      return { total, byCapability: request.byCapability ? byCapability : [] };
    },

    async getTaskHistory(request, ctx) {
      const taskId = parseTaskId(request.taskId, "task_id");
      const v = new Violations();
      checkSequence(request.afterSequence === undefined ? undefined : request.afterSequence + 1n, v, "after_sequence", "VAL_INVALID_SEQUENCE");
      v.check();
      const limit = pageSize(request.pageSize);
      const scope = `history:${taskId}`;
      const cursor = decodePageToken(request.pageToken, scope);
      if (cursor !== undefined && (typeof cursor !== "string" || !/^\d+$/.test(cursor) || BigInt(cursor) > MAX_SEQUENCE)) {
        throw invalidArgument([{ field: "page_token", description: "not a page token of this query" }], "VAL_INVALID_PAGE_TOKEN");
      }
      const after = cursor !== undefined ? BigInt(cursor) : (request.afterSequence ?? 0n);
      const found = await store.history(taskId, after, limit + 1, ctx.signal);
      if (!found) throw taskNotFound(taskId);
      const page = found.rows.slice(0, limit);
      return {
        transitions: page.map(toTransition),
        nextPageToken: found.rows.length > limit ? encodePageToken(scope, page[page.length - 1]!.sequence) : "",
        sequence: found.sequence,
      };
    },

    async claimTasks(request, ctx) {
      const v = new Violations();
      if (request.workerId === "" || request.workerId.length > 256) v.add("worker_id", "is required (at most 256 characters)");
      if (request.capabilities.length === 0) v.add("capabilities", "at least one capability is required");
      const seen = new Set<string>();
      request.capabilities.forEach((q, i) => {
        if (!isCapability(q.capability)) v.add(`capabilities[${i}].capability`, "is not a capability name");
        else if (seen.has(q.capability)) v.add(`capabilities[${i}].capability`, "is given twice");
        seen.add(q.capability);
        if (!Number.isInteger(q.maxTasks) || q.maxTasks < 1 || q.maxTasks > 1000) v.add(`capabilities[${i}].max_tasks`, "must be between 1 and 1000");
      });
      if (!Number.isInteger(request.maxTasks) || request.maxTasks < 1 || request.maxTasks > 1000) v.add("max_tasks", "must be between 1 and 1000");
      const leaseMs = boundedMs(request.leaseDuration, LEASE_MS.min, LEASE_MS.max, "lease_duration", v) ?? 0;
      v.check();
      const rows = await queue.claim(request.workerId, request.capabilities.map((q) => ({ capability: q.capability, max: q.maxTasks })), request.maxTasks, leaseMs, ctx.signal);
      return { tasks: rows.map((r) => toTask(r)) };
    },

    async assignTasks(request, ctx) {
      const v = new Violations();
      if (!isCapability(request.capability)) v.add("capability", "is not a capability name");
      if (request.workerIds.length === 0 || request.workerIds.length > 1000) v.add("worker_ids", "must hold 1..1000 slots");
      request.workerIds.forEach((id, i) => { if (id === "" || id.length > 256) v.add(`worker_ids[${i}]`, "is not a worker id (1..256 characters)"); });
      const leaseMs = boundedMs(request.leaseDuration, LEASE_MS.min, LEASE_MS.max, "lease_duration", v) ?? 0;
      v.check();
      const rows = await queue.assign(request.capability, request.workerIds, leaseMs, ctx.signal);
      return { tasks: rows.map((r) => toTask(r)) };
    },

    async renewLeases(request, ctx) {
      const v = new Violations();
      if (request.workerId === "") v.add("worker_id", "is required");
      if (request.leaseIds.length > 1000) v.add("lease_ids", "at most 1000 lease ids");
      request.leaseIds.forEach((id, i) => { if (!isUuid(id)) v.add(`lease_ids[${i}]`, "is not a lease id"); });
      const leaseMs = boundedMs(request.leaseDuration, LEASE_MS.min, LEASE_MS.max, "lease_duration", v) ?? 0;
      v.check();
      return queue.renew(request.workerId, [...new Set(request.leaseIds)], leaseMs, ctx.signal);
    },

    async startTask(request, ctx) {
      const v = new Violations();
      const call = leaseCall(request, v);
      const leaseMs = boundedMs(request.leaseDuration, LEASE_MS.min, LEASE_MS.max, "lease_duration", v, false);
      v.check();
      const { row, transition } = await store.start(call, leaseMs, ctx.signal);
      return { task: toTask(row), transition };
    },

    async recordProgress(request, ctx) {
      const v = new Violations();
      checkLeaseCall(request.taskId, request.leaseId, v);
      const report = parseProgress(request.progress, v);
      v.check();
      return { update: await store.progress({ taskId: request.taskId, leaseId: request.leaseId }, report, ctx.signal) };
    },

    async completeTask(request, ctx) {
      const v = new Violations();
      const call = leaseCall(request, v);
      const output = checkOutput(request.output, v);
      v.check();
      const { row, transition } = await store.complete(call, output, ctx.signal);
      return { task: toTask(row), transition };
    },

    async failTask(request, ctx) {
      const v = new Violations();
      const call = leaseCall(request, v);
      const error = parseTaskError(request.error, v);
      v.check();
      const { row, transition, willRetry } = await store.fail(call, error, ctx.signal);
      return { task: toTask(row), transition, willRetry };
    },

    async cancelTask(request, ctx) {
      const taskId = parseTaskId(request.taskId, "task_id");
      const v = new Violations();
      if (request.reason.length > MAX_REASON_CHARS) v.add("reason", `is longer than ${MAX_REASON_CHARS} characters`, "VAL_REASON_TOO_LONG");
      if (request.actor.length > 256) v.add("actor", "is longer than 256 characters");
      checkSequence(request.expectedSequence, v);
      v.check();
      const { row, transition, endedLease } = await store.cancel(taskId, request.reason, request.actor, request.expectedSequence, ctx.signal);
      return { task: toTask(row), transition, endedLease, alreadyCancelled: transition === undefined };
    },

    async releaseTask(request, ctx) {
      const v = new Violations();
      const call = leaseCall(request, v);
      if (request.reason.length > MAX_REASON_CHARS) v.add("reason", `is longer than ${MAX_REASON_CHARS} characters`);
      v.check();
      const { row, transition } = await store.release(call, request.reason, ctx.signal);
      return { task: toTask(row), transition };
    },

    async expireLeases(request, ctx) {
      return queue.expireLeases(parseLimit(request.limit), ctx.signal);
    },

    async reapTimeouts(request, ctx) {
      return queue.reapTimeouts(parseLimit(request.limit), ctx.signal);
    },

    async upsertWorker(request, ctx) {
      const v = new Violations();
      const info = request.worker;
      if (!info || info.workerId === "" || info.workerId.length > 256) v.add("worker.worker_id", "is required (at most 256 characters)", "VAL_INVALID_REGISTRATION");
      info?.capabilities.forEach((c, i) => { if (!isCapability(c.name)) v.add(`worker.capabilities[${i}].name`, "is not a capability name", "VAL_INVALID_REGISTRATION"); });
      if (request.sessionId === "" || request.sessionId.length > 256) v.add("session_id", "is required (at most 256 characters)", "VAL_INVALID_REGISTRATION");
      if (request.state !== WorkerState.WORKER_STATE_CONNECTED && request.state !== WorkerState.WORKER_STATE_DRAINING) {
        v.add("state", "must be CONNECTED or DRAINING", "VAL_INVALID_REGISTRATION");
      }
      if (!Number.isInteger(request.inFlight) || request.inFlight < 0) v.add("in_flight", "must not be negative", "VAL_INVALID_REGISTRATION");
      if (!(request.load >= 0 && request.load <= 1)) v.add("load", "must be between 0.0 and 1.0", "VAL_INVALID_REGISTRATION");
      v.check();
      const { worker, replacedSessionId } = await workers.upsert({
        info: info!, sessionId: request.sessionId, coordinatorId: request.coordinatorId,
        state: request.state === WorkerState.WORKER_STATE_CONNECTED ? "CONNECTED" : "DRAINING",
        newSession: request.newSession, inFlight: request.inFlight, load: request.load,
      }, ctx.signal);
      return { worker: toWorker(worker), replacedSessionId };
    },

    async markWorkerGone(request, ctx) {
      const v = new Violations();
      if (request.workerId === "") v.add("worker_id", "is required");
      if (request.sessionId === "") v.add("session_id", "is required");
      v.check();
      const { worker, reclaimed } = await workers.markGone(request.workerId, request.sessionId, request.expireLeases, ctx.signal);
      return { worker: toWorker(worker), reclaimed };
    },

    async listWorkers(request, ctx) {
      const v = new Violations();
      checkWorkerStates(request.states, v);
      if (request.capability !== "" && !isCapability(request.capability)) v.add("capability", "is not a capability name");
      v.check();
      const limit = pageSize(request.pageSize);
      const filter = {
        states: [...new Set(request.states.map((s) => WorkerState[s].replace(/^WORKER_STATE_/, "")))],
        capability: request.capability,
        seenAfter: request.seenAfter ?? null,
      };
      const scope = scopeOf("workers", filter);
      const cursor = decodePageToken(request.pageToken, scope);
      if (cursor !== undefined && typeof cursor !== "string") {
        throw invalidArgument([{ field: "page_token", description: "not a page token of this query" }], "VAL_INVALID_PAGE_TOKEN");
      }
      const rows = await workers.list(filter, cursor ?? "", limit + 1, ctx.signal);
      const page = rows.slice(0, limit);
      return {
        workers: page.map(toWorker),
        nextPageToken: rows.length > limit ? encodePageToken(scope, page[page.length - 1]!.worker_id) : "",
      };
    },
  };
}

/** Checks a worker-side call's task id, lease id and expected sequence, and returns them as the store takes them. */
function leaseCall(request: { taskId: string; leaseId: string; expectedSequence?: bigint | undefined }, v: Violations): LeaseCall {
  checkLeaseCall(request.taskId, request.leaseId, v);
  checkSequence(request.expectedSequence, v);
  return { taskId: request.taskId, leaseId: request.leaseId, expectedSequence: request.expectedSequence };
}
