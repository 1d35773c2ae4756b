import type pg from "pg";
import { withTransaction, type Logger } from "@taskmesh/kit";
import { retentionSql } from "./sql/retention.js";

/** Options of a {@link Retention} pass. */
export interface RetentionOptions {
  /** How long a finished task is kept after it finished, in ms; 0 keeps every task. */
  readonly retentionMs: number;
  /** Time between passes, in ms. @default 60000 */
  readonly intervalMs?: number;
  /** Tasks removed per transaction. @default 1000 */
  readonly batch?: number;
  /** Most transactions in one pass (the next pass goes on). @default 20 */
  readonly maxBatchesPerPass?: number;
  readonly logger: Logger;
}

/**
 * Bounded retention of finished tasks: every `intervalMs` it removes the
 * tasks that finished more than `retentionMs` ago (SUCCEEDED, FAILED,
 * CANCELLED, TIMED_OUT; pending and running ones are never touched), with
 * their history, `batch` at a time, one transaction each, once the outbox
 * relay has published every transition of theirs. Their events stay on
 * Kafka (with Kafka's retention); progress rows leave the outbox when
 * published, so nothing else grows. After removal a task is NOT_FOUND, and
 * its idempotency key may be used again. Replicas may run it side by side
 * (rows another pass holds are skipped).
 */
export class Retention {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> | undefined;
  private stopped = false;

  constructor(private readonly pool: pg.Pool, private readonly options: RetentionOptions) {}

  /** Starts the passes (none when retention is 0). */
  start(): void {
    if (this.options.retentionMs <= 0 || this.stopped) return;
    this.timer = setInterval(() => {
      this.running ??= this.pass().catch((error: unknown) => this.options.logger.warn({ err: error }, "retention pass failed; the next one retries"))
        .finally(() => (this.running = undefined));
    }, this.options.intervalMs ?? 60_000);
    this.timer.unref();
  }

  /** Stops the passes and waits for one in progress. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await this.running;
  }

  /** One pass: removes what is due, in batches; answers how many tasks and history rows went. */
  async pass(): Promise<{ tasks: number; transitions: number }> {
    const batch = this.options.batch ?? 1000;
    let tasks = 0;
    let transitions = 0;
    for (let i = 0; i < (this.options.maxBatchesPerPass ?? 20) && !this.stopped; i++) {
      const removed = await withTransaction(this.pool, async (client) => {
        const rows = (await client.query<{ id: string; workflow_id: string | null }>(retentionSql.removeTasks, [this.options.retentionMs, batch])).rows;
        const ids = rows.map((r) => r.id);
        const history = ids.length === 0 ? 0 : (await client.query(retentionSql.removeHistory, [ids])).rowCount ?? 0;
        const workflows = [...new Set(rows.flatMap((r) => (r.workflow_id ? [r.workflow_id] : [])))];
        if (workflows.length > 0) {
          await client.query(retentionSql.removeDeps, [ids]);
          await client.query(retentionSql.removeWorkflows, [workflows]);
        }
        return { tasks: ids.length, transitions: history };
      });
      tasks += removed.tasks;
      transitions += removed.transitions;
      if (removed.tasks < batch) break;
    }
    if (tasks > 0) this.options.logger.info({ tasks, transitions, retentionMs: this.options.retentionMs }, "finished tasks past their retention removed");
    return { tasks, transitions };
  }
}
