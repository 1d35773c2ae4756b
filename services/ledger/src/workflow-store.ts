import type pg from "pg";
import { FailurePolicy, TaskState, WorkflowState, type TaskLease, type Workflow } from "@taskmesh/contracts/gen/taskmesh/task/v1/task";
import { Code, MeshError, query, withTransaction } from "@taskmesh/kit";
import { addCount, emptyCounts, isFinished, leaseOf, stateOf, type LeaseColumns } from "./records.js";
import { historySql } from "./sql/history.js";
import { workflowSql, type NodeRow, type WorkflowRow } from "./sql/workflows.js";
import type { NewTask } from "./validation.js";
import { historyColumns } from "./writer.js";

/** A new workflow's task: the task, its name, and the ids of the tasks it depends on. */
export interface NewWorkflowTask {
  readonly task: NewTask & { readonly id: string };
  readonly name: string;
  readonly dependsOn: readonly string[];
}

/** A new workflow as the ledger stores it. */
export interface NewWorkflow {
  readonly id: string;
  readonly name: string;
  readonly failurePolicy: "FAIL_FAST" | "CONTINUE";
  readonly idempotencyKey: string;
  readonly requestHash: string;
  readonly createdBy: string;
  readonly labels: Record<string, string>;
  readonly traceId: string;
  readonly traceparent: string;
  readonly tasks: readonly NewWorkflowTask[];
}

/** A workflow read back: its row and its graph. */
export interface StoredWorkflow {
  readonly row: WorkflowRow;
  readonly nodes: readonly NodeRow[];
}

export function workflowNotFound(id: string): MeshError {
  return new MeshError({ code: Code.NOT_FOUND, reason: "RES_WORKFLOW_NOT_FOUND", message: `no workflow ${id}`, metadata: { workflow_id: id } });
}

function workflowExists(what: "key" | "id", id: string): MeshError {
  return new MeshError({
    code: Code.ALREADY_EXISTS,
    reason: what === "key" ? "RES_IDEMPOTENCY_KEY_REUSED" : "RES_WORKFLOW_ID_REUSED",
    message: what === "key" ? "the idempotency key was used by a different workflow" : "the workflow id was used by a different request",
    metadata: { workflow_id: id },
  });
}

/** A stored workflow as the wire Workflow: its state read from its tasks'. */
export function toWorkflow({ row, nodes }: StoredWorkflow): Workflow {
  const counts = emptyCounts();
  const names = new Map(nodes.map((n) => [n.id, n.workflow_step]));
  let finishedAt: Date | undefined;
  let unfinished = 0;
  let failed = false;
  for (const n of nodes) {
    addCount(counts, n.state, 1n, row.created_at);
    if (!isFinished(n.state)) unfinished++;
    else if (!finishedAt || (n.finished_at && n.finished_at > finishedAt)) finishedAt = n.finished_at ?? finishedAt;
    if (n.state !== "SUCCEEDED" && isFinished(n.state)) failed = true;
  }
  const state = unfinished > 0 ? WorkflowState.WORKFLOW_STATE_RUNNING
    : row.cancelled_at ? WorkflowState.WORKFLOW_STATE_CANCELLED
      : failed ? WorkflowState.WORKFLOW_STATE_FAILED : WorkflowState.WORKFLOW_STATE_SUCCEEDED;
  counts.oldestPendingCreatedAt = counts.pending > 0n ? row.created_at : undefined;
  return {
    id: row.id, name: row.name, state,
    failurePolicy: row.failure_policy === "CONTINUE" ? FailurePolicy.FAILURE_POLICY_CONTINUE : FailurePolicy.FAILURE_POLICY_FAIL_FAST,
    nodes: nodes.map((n) => ({
      name: n.workflow_step, taskId: n.id, capability: n.capability, state: stateOf(n.state) as TaskState,
      dependsOn: (n.depends_on ?? []).map((id) => names.get(id) ?? id),
    })),
    counts, idempotencyKey: row.idempotency_key, labels: row.labels, createdBy: row.created_by, traceId: row.trace_id,
    createdAt: row.created_at, finishedAt: unfinished === 0 ? finishedAt : undefined, cancelledAt: row.cancelled_at ?? undefined,
  };
}

/** Workflows on Postgres: stored whole in one transaction; their graph moves in the database (migration 0012). */
export class WorkflowStore {
  constructor(private readonly pool: pg.Pool) {}

  /** Stores a workflow with all its tasks and edges, or answers the workflow an identical earlier request created. */
  async create(w: NewWorkflow, signal?: AbortSignal): Promise<{ workflow: StoredWorkflow; created: boolean; readyCapabilities: string[] }> {
    return withTransaction(this.pool, async (client) => {
      const inserted = (await client.query<WorkflowRow>(workflowSql.insert, [
        w.id, w.name, w.failurePolicy, w.idempotencyKey, w.requestHash, w.createdBy, JSON.stringify(w.labels), w.traceId, w.tasks.length,
      ])).rows[0];
      if (!inserted) {
        const existing = (await client.query<WorkflowRow>(workflowSql.get, [w.id])).rows[0];
        if (existing) {
          if (existing.request_hash !== w.requestHash) throw workflowExists("id", existing.id);
          return { workflow: await this.readWith(client, existing), created: false, readyCapabilities: [] };
        }
        const byKey = (await client.query<WorkflowRow>(workflowSql.byIdempotencyKey, [w.createdBy, w.idempotencyKey])).rows[0];
        if (!byKey) throw new Error("workflow insert conflicted, but no conflicting workflow was found");
        if (byKey.request_hash !== w.requestHash) throw workflowExists("key", byKey.id);
        return { workflow: await this.readWith(client, byKey), created: false, readyCapabilities: [] };
      }
      const col = <T>(pick: (t: NewWorkflowTask) => T): T[] => w.tasks.map(pick);
      const created = (await client.query<{ id: string; state: "WAITING" | "PENDING"; created_at: Date }>(workflowSql.insertTasks, [
        col((t) => t.task.id), col((t) => t.task.capability), col((t) => JSON.stringify(t.task.input)), col((t) => t.task.maxAttempts),
        col((t) => t.task.requestHash), col((t) => t.task.priority), col((t) => JSON.stringify(t.task.labels)), col((t) => t.task.timeoutMs),
        col((t) => t.task.retryInitialMs), col((t) => t.task.retryMaxMs), col((t) => t.task.retryMultiplier), col((t) => t.name),
        col((t) => t.dependsOn.join(",")), col((t) => t.dependsOn.length),
        w.traceId, w.traceparent, w.createdBy, w.id,
      ])).rows;
      const now = inserted.created_at;
      await client.query(historySql.insertMany, historyColumns(created.map((r) => ({
        task_id: r.id, sequence: "1", kind: "SUBMITTED", from_state: "", to_state: r.state, attempt: 0, worker_id: "", lease_id: "", at: now,
        reason: "", error: null, trace_id: w.traceId, next_attempt_at: null, actor: w.createdBy,
      }))));
      const edges = w.tasks.flatMap((t) => t.dependsOn.map((d) => [d, t.task.id] as const));
      if (edges.length > 0) await client.query(workflowSql.insertDeps, [edges.map((e) => e[0]), edges.map((e) => e[1])]);
      const ready = [...new Set(w.tasks.filter((t) => t.dependsOn.length === 0).map((t) => t.task.capability))];
      return { workflow: await this.readWith(client, inserted), created: true, readyCapabilities: ready };
    }, signal ? { signal } : {});
  }

  /** A workflow with its graph, or undefined. */
  async get(id: string, signal?: AbortSignal): Promise<StoredWorkflow | undefined> {
    const row = (await query<WorkflowRow>(this.pool, workflowSql.get, [id], signal)).rows[0];
    if (!row) return undefined;
    return { row, nodes: (await query<NodeRow>(this.pool, workflowSql.nodes, [id], signal)).rows };
  }

  /**
   * Cancels every unfinished task of a workflow in one transaction and
   * marks it cancelled; answers it and the leases that ended. A workflow
   * already cancelled is answered as it is.
   */
  async cancel(id: string, reason: string, actor: string, signal?: AbortSignal): Promise<{ workflow: StoredWorkflow; endedLeases: TaskLease[] }> {
    // Its locks (every unfinished task, in id order) can meet a completion's (the task, then its dependents) in a
    // deadlock, which Postgres ends by failing one side: a cancel is safe to run again, so it is, a few times.
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.cancelOnce(id, reason, actor, signal);
      } catch (error) {
        const conflict = error instanceof MeshError ? error.reason === "SYS_SERIALIZATION_FAILURE" : ["40P01", "40001"].includes((error as { code?: string }).code ?? "");
        if (!conflict || attempt >= 5 || signal?.aborted) throw error;
        await new Promise((r) => setTimeout(r, 20 * attempt));
      }
    }
  }

  private async cancelOnce(id: string, reason: string, actor: string, signal?: AbortSignal): Promise<{ workflow: StoredWorkflow; endedLeases: TaskLease[] }> {
    return withTransaction(this.pool, async (client) => {
      const marked = (await client.query<WorkflowRow>(workflowSql.markCancelled, [id])).rows[0];
      const row = marked ?? (await client.query<WorkflowRow>(workflowSql.get, [id])).rows[0];
      if (!row) throw workflowNotFound(id);
      const endedLeases: TaskLease[] = [];
      if (marked) {
        const open = (await client.query<LeaseColumns>(workflowSql.unfinished, [id])).rows;
        endedLeases.push(...open.flatMap((t) => leaseOf(t) ?? []));
        if (open.length > 0) await client.query(workflowSql.cancelTasks, [open.map((t) => t.id), reason, actor]);
      }
      return { workflow: await this.readWith(client, row), endedLeases };
    }, signal ? { signal } : {});
  }

  /** Per task of `taskIds`, the capabilities of the tasks its completion made ready (PENDING, not leased). */
  async readyAfter(taskIds: readonly string[], signal?: AbortSignal): Promise<Map<string, string[]>> {
    const ready = new Map<string, string[]>();
    if (taskIds.length === 0) return ready;
    const { rows } = await query<{ depends_on: string; capability: string }>(this.pool, workflowSql.readyCapabilities, [taskIds], signal);
    for (const r of rows) ready.set(r.depends_on, [...(ready.get(r.depends_on) ?? []), r.capability]);
    return ready;
  }

  private async readWith(client: pg.PoolClient, row: WorkflowRow): Promise<StoredWorkflow> {
    return { row, nodes: (await client.query<NodeRow>(workflowSql.nodes, [row.id])).rows };
  }
}
