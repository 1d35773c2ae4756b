import type pg from "pg";
import type { ReclaimedTask } from "@taskmesh/contracts/gen/taskmesh/ledger/v1/ledger";
import type { WorkerInfo } from "@taskmesh/contracts/gen/taskmesh/worker/v1/worker";
import { query, withTransaction } from "@taskmesh/kit";
import { sessionReplaced, workerNotFound } from "./errors.js";
import { taskSql, type TaskRow } from "./sql/tasks.js";
import { workerSql, type WorkerRow } from "./sql/workers.js";
import { LEDGER_REASONS } from "./transitions.js";
import { dbNow, reclaim } from "./writer.js";

/** A registration or heartbeat, validated. */
export interface WorkerUpsert {
  readonly info: WorkerInfo;
  readonly sessionId: string;
  readonly coordinatorId: string;
  readonly state: "CONNECTED" | "DRAINING";
  readonly newSession: boolean;
  readonly inFlight: number;
  readonly load: number;
}

/** Filters of a worker listing. */
export interface WorkerFilter {
  readonly states: string[];
  readonly capability: string;
  readonly seenAfter: Date | null;
}

/** Worker records on Postgres (`ledger.workers`); records create no event. */
export class WorkerStore {
  constructor(private readonly pool: pg.Pool) {}

  /** Records a registration (the session becomes current) or a heartbeat of the current session. */
  async upsert(u: WorkerUpsert, signal?: AbortSignal): Promise<{ worker: WorkerRow; replacedSessionId: string }> {
    return withTransaction(this.pool, async (client) => {
      const workerId = u.info.workerId;
      const existing = (await client.query<WorkerRow>(workerSql.getForUpdate, [workerId])).rows[0];
      const info = JSON.stringify(u.info);
      const capabilities = u.info.capabilities.map((c) => c.name);
      if (u.newSession) {
        const replaced = existing && existing.state !== "GONE" && existing.session_id !== u.sessionId ? existing.session_id : "";
        const worker = (await client.query<WorkerRow>(workerSql.register, [workerId, info, capabilities, u.state, u.sessionId, u.coordinatorId, u.inFlight, u.load])).rows[0]!;
        return { worker, replacedSessionId: replaced };
      }
      if (!existing || existing.state === "GONE" || existing.session_id !== u.sessionId) {
        throw sessionReplaced(workerId, existing && existing.state !== "GONE" ? existing.session_id : "");
      }
      const worker = (await client.query<WorkerRow>(workerSql.heartbeat, [workerId, info, capabilities, u.state, u.coordinatorId, u.inFlight, u.load])).rows[0]!;
      return { worker, replacedSessionId: "" };
    }, signal ? { signal } : {});
  }

  /** Ends the worker's current session (GONE), optionally taking back its leases at once. */
  async markGone(workerId: string, sessionId: string, expireLeases: boolean, signal?: AbortSignal): Promise<{ worker: WorkerRow; reclaimed: ReclaimedTask[] }> {
    return withTransaction(this.pool, async (client) => {
      const existing = (await client.query<WorkerRow>(workerSql.getForUpdate, [workerId])).rows[0];
      if (!existing) throw workerNotFound(workerId);
      if (existing.session_id !== sessionId) throw sessionReplaced(workerId, existing.session_id);
      const worker = existing.state === "GONE" ? existing : (await client.query<WorkerRow>(workerSql.gone, [workerId])).rows[0]!;
      const reclaimed: ReclaimedTask[] = [];
      if (expireLeases) {
        const now = await dbNow(client);
        const error = { reason: LEDGER_REASONS.workerLost, message: "the worker disconnected", retryable: true };
        for (const row of (await client.query<TaskRow>(taskSql.leasedBy, [workerId])).rows) reclaimed.push(await reclaim(client, now, row, error));
      }
      return { worker, reclaimed };
    }, signal ? { signal } : {});
  }

  /** Up to `limit` workers matching `filter` with ids after `after`, by id. */
  async list(filter: WorkerFilter, after: string, limit: number, signal?: AbortSignal): Promise<WorkerRow[]> {
    return (await query<WorkerRow>(this.pool, workerSql.list, [filter.states, filter.capability, filter.seenAfter, after, limit], signal)).rows;
  }
}
