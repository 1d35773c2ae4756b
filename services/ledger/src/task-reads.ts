import type pg from "pg";
import type { CapabilityTaskCounts } from "@taskmesh/contracts/gen/taskmesh/ledger/v1/ledger";
import type { TaskCounts } from "@taskmesh/contracts/gen/taskmesh/task/v1/task";
import { query, withTransaction } from "@taskmesh/kit";
import { addCount, emptyCounts } from "./records.js";
import { historySql, type HistoryRow } from "./sql/history.js";
import { taskSql, type StateName, type TaskRow } from "./sql/tasks.js";

/** Filters of a task listing (stored names; empty means any). */
export interface TaskFilter {
  readonly states: StateName[];
  readonly capabilities: string[];
  readonly createdAfter: Date | null;
  readonly createdBefore: Date | null;
  readonly workerId: string;
  readonly createdBy: string;
  /** Only this workflow's tasks; null for any. */
  readonly workflowId: string | null;
  /** Only this task's children; null for any. */
  readonly parentId: string | null;
}

type Signal = AbortSignal | undefined;

/**
 * Task reads on Postgres (one task, listings, counts, history), and the
 * transaction every call of the ledger store runs in.
 */
export class TaskReads {
  /** `shared`: the transaction of a batch, which every write of this store joins. */
  constructor(protected readonly pool: pg.Pool, protected readonly shared?: pg.PoolClient) {}

  protected tx<T>(work: (client: pg.PoolClient) => Promise<T>, signal: Signal): Promise<T> {
    if (this.shared) return work(this.shared);
    return withTransaction(this.pool, work, signal ? { signal } : {});
  }

  /** One task, or undefined. */
  async get(id: string, signal?: AbortSignal): Promise<TaskRow | undefined> {
    return (await query<TaskRow>(this.pool, taskSql.get, [id], signal)).rows[0];
  }

  /** Up to `limit` tasks matching `filter` with ids below `beforeId`, newest first. */
  async list(filter: TaskFilter, beforeId: string | null, limit: number, signal?: AbortSignal): Promise<TaskRow[]> {
    const f = filter;
    return (await query<TaskRow>(this.pool, taskSql.list, [f.states, f.capabilities, f.createdAfter, f.createdBefore, f.workerId, f.createdBy, beforeId, limit, f.workflowId, f.parentId], signal)).rows;
  }

  /** Counts by state, in all and per capability. */
  async count(capabilities: string[], createdAfter: Date | null, signal?: AbortSignal): Promise<{ total: TaskCounts; byCapability: CapabilityTaskCounts[] }> {
    const { rows } = await query<{ capability: string; state: StateName; n: string; oldest: Date }>(this.pool, taskSql.count, [capabilities, createdAfter], signal);
    const total = emptyCounts();
    const per = new Map<string, TaskCounts>();
    for (const r of rows) {
      addCount(total, r.state, BigInt(r.n), r.oldest);
      if (!per.has(r.capability)) per.set(r.capability, emptyCounts());
      addCount(per.get(r.capability)!, r.state, BigInt(r.n), r.oldest);
    }
    return { total, byCapability: [...per].map(([capability, counts]) => ({ capability, counts })) };
  }

  /** A page of a task's history after `after`, with its current sequence; undefined when the task does not exist. */
  async history(taskId: string, after: bigint, limit: number, signal?: AbortSignal): Promise<{ rows: HistoryRow[]; sequence: bigint } | undefined> {
    return this.tx(async (client) => {
      const task = (await client.query<TaskRow>(taskSql.get, [taskId])).rows[0];
      if (!task) return undefined;
      const rows = (await client.query<HistoryRow>(historySql.page, [taskId, after.toString(), limit])).rows;
      return { rows, sequence: BigInt(task.sequence) };
    }, signal);
  }
}
