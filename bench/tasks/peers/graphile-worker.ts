import { Logger, makeWorkerUtils, run } from "graphile-worker";
import pg from "pg";
import { CompletionLog } from "../completions.js";
import { freshDatabase } from "../infra.js";
import { measureBurst, measureSteady } from "../measure.js";
import { ECHO_INPUT, type QueueRunner } from "../runner.js";

/**
 * The throughput settings of graphile-worker's own performance page: 24
 * concurrent jobs, a pool of 25, a local queue of 500 jobs fetched (and
 * locked) per query, and job completions and failures written in batches
 * (`completeJobBatchDelay: 0`, `failJobBatchDelay: 0`).
 */
export const GRAPHILE_WORKER_CONFIG = Object.freeze({
  concurrentJobs: 24,
  maxPoolSize: 25,
  localQueue: { size: 500 },
  completeJobBatchDelay: 0,
  failJobBatchDelay: 0,
});

/** Drops graphile-worker's logging: its per-job lines would cost more than the jobs. */
const SILENT = new Logger(() => () => undefined);

/**
 * graphile-worker with its worker in this process, in a database of its own.
 * The echo task returns nothing: graphile-worker stores no job results.
 * Completion is the worker's `job:complete` event (the handler returned and
 * the completion joined the next batch written to Postgres).
 */
export async function graphileWorkerRunner(infra: { postgresAdminUrl: string }): Promise<QueueRunner> {
  const connectionString = await freshDatabase(infra.postgresAdminUrl, "bench_graphile_worker");
  const completions = new CompletionLog();
  const utils = await makeWorkerUtils({ connectionString, logger: SILENT });
  await utils.migrate();
  const runner = await run({
    logger: SILENT,
    noHandleSignals: true,
    // graphile-worker keeps no job results: the echo handler has nothing to return to.
    taskList: { echo: async () => undefined },
    preset: { worker: { connectionString, ...GRAPHILE_WORKER_CONFIG, localQueue: { ...GRAPHILE_WORKER_CONFIG.localQueue } } },
  });
  runner.events.on("job:complete", ({ job, error }) => {
    if (!error) completions.record(job.id);
  });
  const probe = new pg.Pool({ connectionString, max: 1 });

  return {
    name: "graphile-worker",
    burst: (n) => measureBurst(n, {
      completions,
      enqueue: async (count) => {
        await utils.addJobs(Array.from({ length: count }, () => ({ identifier: "echo", payload: ECHO_INPUT })));
      },
      unfinished: async () => Number((await probe.query<{ n: string }>("SELECT count(*) AS n FROM graphile_worker._private_jobs")).rows[0]?.n),
    }),
    steady: (rate, durationSec) => measureSteady(rate, durationSec, completions, async () => {
      const job = await utils.addJob("echo", ECHO_INPUT);
      return completions.completionOf(job.id);
    }),
    close: async () => {
      await runner.stop();
      await utils.release();
      await probe.end();
    },
  };
}
