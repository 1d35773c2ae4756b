import type { LedgerServiceService } from "@taskmesh/contracts/gen/taskmesh/ledger/v1/ledger";
import { TaskView } from "@taskmesh/contracts/gen/taskmesh/task/v1/task";
import { decodePageToken, encodePageToken, invalidArgument, pageSize, type ServiceHandlers } from "@taskmesh/kit";
import { taskNotFound } from "./errors.js";
import { isUuid } from "./ids.js";
import type { LedgerStore } from "./ledger-store.js";
import { stateName, toTask, toTransition } from "./records.js";
import type { TaskFilter } from "./task-reads.js";
import { Violations, checkCapabilities, checkSequence, checkStates, parseTaskId, parseView } from "./validation.js";

const MAX_SEQUENCE = 9_223_372_036_854_775_807n;

/** The page-token scope of a query: its filters, so a token only fits the query it came from. */
export function scopeOf(kind: string, filters: unknown): string {
  return `${kind}:${JSON.stringify(filters, (_, v: unknown) => (typeof v === "bigint" ? v.toString() : v))}`;
}

/** The task reads: one task, listings, counts and history, paged with tokens bound to their query. */
export function readHandlers(store: LedgerStore): Pick<ServiceHandlers<typeof LedgerServiceService>, "getTask" | "listTasks" | "countTasks" | "getTaskHistory"> {
  return {
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
      if (request.workflowId !== "" && !isUuid(request.workflowId)) v.add("workflow_id", "must be a workflow id (a lower-case UUID), or empty", "VAL_INVALID_WORKFLOW_ID");
      if (request.parentId !== "" && !isUuid(request.parentId)) v.add("parent_id", "must be a task id (a lower-case UUID), or empty", "VAL_INVALID_TASK_ID");
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
        workflowId: request.workflowId === "" ? null : request.workflowId,
        parentId: request.parentId === "" ? null : request.parentId,
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
  };
}
