import { PgBoss } from "pg-boss";
import pg from "pg";
import { CompletionLog } from "../completions.js";
import { freshDatabase } from "../infra.js";
import { measureBurst, measureSteady } from "../measure.js";
import { ECHO_INPUT, type EchoInput, type QueueRunner } from "../runner.js";

const QUEUE = "echo";

/**
 * pg-boss set up for throughput: LISTEN/NOTIFY on (instance and queue), so a
 * new job wakes the workers at once; 4 local workers, each fetching up to 100
 * jobs per query and fetching again at once while batches come back full;
 * the idle poll at its minimum (0.5 s) as the backstop.
 */
export const PG_BOSS_CONFIG = Object.freeze({
  instance: { useListenNotify: true, max: 20 },
  queue: { notify: true },
  work: { batchSize: 100, localConcurrency: 4, burstWhenBatchFull: true, pollingIntervalSeconds: 0.5 },
});

/**
 * pg-boss with its workers in this process, in a database of its own.
 * Completion is the work handler's return for its batch (pg-boss then marks
 * the batch completed in one statement; it emits no per-job event).
 */
export async function pgBossRunner(infra: { postgresAdminUrl: string }): Promise<QueueRunner> {
  const connectionString = await freshDatabase(infra.postgresAdminUrl, "bench_pg_boss");
  const completions = new CompletionLog();
  const boss = new PgBoss({ connectionString, ...PG_BOSS_CONFIG.instance });
  let failure: Error | undefined;
  boss.on("error", (error) => {
    failure ??= error;
  });
  await boss.start();
  await boss.createQueue(QUEUE, { ...PG_BOSS_CONFIG.queue });
  await boss.work<EchoInput>(QUEUE, { ...PG_BOSS_CONFIG.work }, async (jobs) => {
    for (const job of jobs) completions.record(job.id);
    return jobs.map((job) => job.data);
  });
  const probe = new pg.Pool({ connectionString, max: 1 });
  const check = (): void => {
    if (failure) throw new Error(`pg-boss reported an error: ${failure.message}`, { cause: failure });
  };

  return {
    name: "pg-boss",
    burst: async (n) => {
      const result = await measureBurst(n, {
        completions,
        enqueue: async (count) => {
          await boss.insert(QUEUE, Array.from({ length: count }, () => ({ data: ECHO_INPUT })));
        },
        unfinished: async () => Number((await probe.query<{ n: string }>("SELECT count(*) AS n FROM pgboss.job WHERE name = $1 AND state < 'completed'", [QUEUE])).rows[0]?.n),
      });
      check();
      return result;
    },
    steady: async (rate, durationSec) => {
      const result = await measureSteady(rate, durationSec, completions, async () => {
        const id = await boss.send(QUEUE, ECHO_INPUT);
        if (!id) throw new Error("pg-boss did not create the job");
        return completions.completionOf(id);
      });
      check();
      return result;
    },
    close: async () => {
      await boss.stop({ graceful: true, timeout: 10_000 });
      await probe.end();
    },
  };
}
