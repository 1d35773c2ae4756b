import type pg from "pg";
import type { ReclaimedTask } from "@taskmesh/contracts/gen/taskmesh/ledger/v1/ledger";
import type { LostLease, TaskLease } from "@taskmesh/contracts/gen/taskmesh/task/v1/task";
import { query, withTransaction } from "@taskmesh/kit";
import { workerNotConnected } from "./errors.js";
import { uuidv7 } from "./ids.js";
import { isFinished, leaseOf } from "./records.js";
import { historySql } from "./sql/history.js";
import { taskSql, type StateName, type StoredError, type TaskRow } from "./sql/tasks.js";
import { workerSql, type WorkerRow } from "./sql/workers.js";
import { LEDGER_REASONS } from "./transitions.js";
import { dbNow, reclaim, saveTask } from "./writer.js";
import type { RowCache } from "./row-cache.js";

/** The result of a maintenance pass. */
export interface Reclaimed {
  readonly reclaimed: ReclaimedTask[];
  readonly more: boolean;
}

type Signal = AbortSignal | undefined;

/**
 * The queue on Postgres: claims (FOR UPDATE SKIP LOCKED, so concurrent
 * claimers never get the same task), lease renewals, and the maintenance
 * passes that take tasks back from expired leases and timed-out attempts.
 * Claims and renewals create no event.
 */
export class QueueStore {
  /** `rows`: where the rows it leases are remembered for their completion (see {@link RowCache}). */
  constructor(private readonly pool: pg.Pool, private readonly rows?: RowCache) {}

  private tx<T>(work: (client: pg.PoolClient) => Promise<T>, signal: Signal): Promise<T> {
    return withTransaction(this.pool, work, signal ? { signal } : {});
  }

  /** Leases up to `max` dispatchable tasks of the given capabilities (each at most its quota) to a CONNECTED worker. */
  async claim(workerId: string, quotas: ReadonlyArray<{ capability: string; max: number }>, max: number, leaseMs: number, signal?: AbortSignal): Promise<TaskRow[]> {
    return this.tx(async (client) => {
      const worker = (await client.query<WorkerRow>(workerSql.get, [workerId])).rows[0];
      if (worker?.state !== "CONNECTED") throw workerNotConnected(workerId, worker?.state ?? "UNKNOWN");
      const now = await dbNow(client);
      const candidates: TaskRow[] = [];
      for (const q of quotas) candidates.push(...(await client.query<TaskRow>(taskSql.claimable, [q.capability, Math.min(q.max, max)])).rows);
      candidates.sort((a, b) => b.priority - a.priority || a.next_attempt_at!.getTime() - b.next_attempt_at!.getTime() || (a.id < b.id ? -1 : 1));
      const claimed: TaskRow[] = [];
      for (const row of candidates.slice(0, max)) {
        claimed.push(await saveTask(client, {
          ...row, lease_id: uuidv7(now.getTime()), lease_worker_id: workerId, lease_acquired_at: now,
          lease_expires_at: new Date(now.getTime() + leaseMs), updated_at: now,
        }));
      }
      return claimed;
    }, signal);
  }

  /** Leases dispatchable tasks of `capability` to the given worker slots, the k-th task to the k-th slot of a CONNECTED worker. */
  async assign(capability: string, workerIds: readonly string[], leaseMs: number, signal?: AbortSignal): Promise<TaskRow[]> {
    const { rows } = await query<TaskRow & { k: string; row_version: string }>(this.pool, taskSql.assign, [capability, workerIds, leaseMs, workerIds.length], signal);
    return rows.sort((a, b) => Number(a.k) - Number(b.k)).map(({ k: _k, row_version, ...row }) => {
      this.rows?.remember(row, row_version);
      return row;
    });
  }

  /** How many tasks are pending (due, waiting for a retry or leased), from the dispatch and lease indexes. */
  async pendingCount(signal?: AbortSignal): Promise<number> {
    return (await query<{ n: number }>(this.pool, taskSql.pendingCount, [], signal)).rows[0]!.n;
  }

  /**
   * Every capability with tasks pending or running: how many of each, when
   * its longest-waiting due task became due (undefined when none), and the
   * database's time of the reading.
   */
  async queueStats(signal?: AbortSignal): Promise<{ readAt: Date; queues: Array<{ capability: string; pending: number; running: number; oldestDue: Date | undefined }> }> {
    const { rows } = await query<{ capability: string; pending: number; running: number; oldest_due: Date | null; read_at: Date }>(this.pool, taskSql.queueStats, [], signal);
    const readAt = rows[0]?.read_at ?? (await query<{ now: Date }>(this.pool, taskSql.now, [], signal)).rows[0]!.now;
    return { readAt, queues: rows.map((r) => ({ capability: r.capability, pending: r.pending, running: r.running, oldestDue: r.oldest_due ?? undefined })) };
  }

  /** Extends a worker's live leases; reports the others lost. */
  async renew(workerId: string, leaseIds: string[], leaseMs: number, signal?: AbortSignal): Promise<{ renewed: TaskLease[]; lost: LostLease[] }> {
    return this.tx(async (client) => {
      const rows = (await client.query<TaskRow>(taskSql.renew, [workerId, leaseIds, leaseMs])).rows;
      const renewed = rows.map((r) => leaseOf(r)!);
      const kept = new Set(renewed.map((l) => l.leaseId));
      const gone = leaseIds.filter((id) => !kept.has(id));
      const seen = new Map(gone.length === 0 ? [] : (await client.query<{ lease_id: string; task_id: string; state: StateName }>(historySql.tasksOfLeases, [gone]))
        .rows.map((r) => [r.lease_id, r] as const));
      const lost: LostLease[] = gone.map((leaseId) => {
        const s = seen.get(leaseId);
        return { taskId: s?.task_id ?? "", leaseId, reason: s && isFinished(s.state) ? "BIZ_TASK_ALREADY_FINISHED" : "RES_LEASE_LOST" };
      });
      return { renewed, lost };
    }, signal);
  }

  /** Takes back up to `limit` tasks whose lease expired, oldest expiry first. */
  async expireLeases(limit: number, signal?: AbortSignal): Promise<Reclaimed> {
    return this.sweep(taskSql.expiredLeases, limit, { reason: LEDGER_REASONS.leaseExpired, message: "the worker's lease expired", retryable: true }, signal);
  }

  /** Fails up to `limit` running attempts that passed their timeout. */
  async reapTimeouts(limit: number, signal?: AbortSignal): Promise<Reclaimed> {
    return this.sweep(taskSql.timedOut, limit, { reason: LEDGER_REASONS.timedOut, message: "the attempt ran past its timeout", retryable: true }, signal);
  }

  private sweep(statement: pg.QueryConfig, limit: number, error: StoredError, signal: Signal): Promise<Reclaimed> {
    return this.tx(async (client) => {
      const now = await dbNow(client);
      const rows = (await client.query<TaskRow>(statement, [limit + 1])).rows;
      const reclaimed: ReclaimedTask[] = [];
      for (const row of rows.slice(0, limit)) reclaimed.push(await reclaim(client, now, row, error));
      return { reclaimed, more: rows.length > limit };
    }, signal);
  }
}
