import type pg from "pg";
import type { Registry } from "prom-client";
import { query, type Logger } from "@taskmesh/kit";
import { cachedLoad, scrapeGauge } from "@taskmesh/kit/metrics";
import { metricsSql } from "./sql/metrics.js";

/** Options of {@link registerLedgerMetrics}. */
export interface LedgerMetricsOptions {
  /** How long one reading of queues, running tasks and outbox is reused, in ms. @default 2000 */
  readonly cacheMs?: number;
  /** How long the finished-task counts (a table scan) are reused, in ms. @default 30000 */
  readonly finishedCacheMs?: number;
  /** The longest one metrics query may run, in ms. @default 5000 */
  readonly queryTimeoutMs?: number;
  /** @default the process registry */
  readonly registry?: Registry;
  readonly log?: Logger;
}

const FINISHED = ["succeeded", "failed", "cancelled", "timed_out"] as const;

/**
 * Registers the ledger's gauges, read from Postgres at scrape time:
 * `taskmesh_tasks{state}`, `taskmesh_queue_depth{capability}`,
 * `taskmesh_queue_oldest_pending_age_seconds{capability}`,
 * `taskmesh_outbox_lag` and `taskmesh_outbox_oldest_age_seconds`.
 */
export function registerLedgerMetrics(pool: pg.Pool, options: LedgerMetricsOptions = {}): void {
  const timeoutMs = options.queryTimeoutMs ?? 5000;
  // A failed reading is logged once here, not once per gauge that shares it.
  const run = <R extends pg.QueryResultRow>(statement: pg.QueryConfig) => query<R>(pool, statement, [], AbortSignal.timeout(timeoutMs)).then(
    (r) => r.rows,
    (error: unknown) => {
      options.log?.warn({ err: error, statement: statement.name }, "ledger metrics not read");
      throw error;
    },
  );
  // A capability once seen keeps reporting (0 when drained), so its series does not just vanish.
  const seen = new Set<string>();
  const live = cachedLoad(async () => {
    const [queues, [running], [outbox]] = await Promise.all([
      run<{ capability: string; depth: number; oldest_due_s: number | null }>(metricsSql.queues),
      run<{ n: number }>(metricsSql.running),
      run<{ lag: number; oldest_s: number | null }>(metricsSql.outbox),
    ]);
    for (const q of queues) seen.add(q.capability);
    const byCapability = new Map(queues.map((q) => [q.capability, q]));
    return {
      queues: [...seen].sort().map((capability) => ({ capability, depth: byCapability.get(capability)?.depth ?? 0, oldestDueS: byCapability.get(capability)?.oldest_due_s ?? 0 })),
      pending: queues.reduce((n, q) => n + q.depth, 0),
      running: running?.n ?? 0,
      outbox: { lag: outbox?.lag ?? 0, oldestS: outbox?.oldest_s ?? 0 },
    };
  }, options.cacheMs ?? 2000);
  const finished = cachedLoad(async () => new Map((await run<{ state: string; n: string }>(metricsSql.finished)).map((r) => [r.state.toLowerCase(), Number(r.n)])), options.finishedCacheMs ?? 30_000);
  const common = { registry: options.registry };

  scrapeGauge({
    name: "taskmesh_tasks",
    help: "Tasks in the ledger by state (pending and running exact at each scrape; finished states refreshed every 30 s).",
    labelNames: ["state"],
    ...common,
    async read() {
      const [now, done] = await Promise.all([live(), finished()]);
      return [[{ state: "pending" }, now.pending], [{ state: "running" }, now.running], ...FINISHED.map((state) => [{ state }, done.get(state) ?? 0] as const)];
    },
  });
  scrapeGauge({
    name: "taskmesh_queue_depth",
    help: "Pending tasks per capability (due now or waiting for a retry).",
    labelNames: ["capability"],
    ...common,
    read: async () => (await live()).queues.map((q) => [{ capability: q.capability }, q.depth] as const),
  });
  scrapeGauge({
    name: "taskmesh_queue_oldest_pending_age_seconds",
    help: "How long the longest-waiting due task of a capability has been waiting for a worker, in seconds (0 when none is due).",
    labelNames: ["capability"],
    ...common,
    read: async () => (await live()).queues.map((q) => [{ capability: q.capability }, Math.max(0, q.oldestDueS)] as const),
  });
  scrapeGauge({
    name: "taskmesh_outbox_lag",
    help: "Task events (transitions past the outbox relay's cursor, progress reports in the outbox) not yet published to Kafka.",
    ...common,
    read: async () => [[{}, (await live()).outbox.lag]],
  });
  scrapeGauge({
    name: "taskmesh_outbox_oldest_age_seconds",
    help: "Age of the oldest task event not yet published, in seconds (0 when all are published).",
    ...common,
    read: async () => [[{}, Math.max(0, (await live()).outbox.oldestS)]],
  });
}
