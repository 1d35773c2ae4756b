import type { Infra } from "./infra.js";
import { bullmqRunner } from "./peers/bullmq.js";
import { graphileWorkerRunner } from "./peers/graphile-worker.js";
import { pgBossRunner } from "./peers/pg-boss.js";
import type { QueueRunner } from "./runner.js";
import { taskmeshRunner } from "./taskmesh.js";

/** Makes a connected runner on the shared servers; it creates its own database, schema or key prefix. */
export type RunnerFactory = (infra: Infra) => Promise<QueueRunner>;

/** Every runner `bench:tasks` knows, by the name `--peers` takes. Add a runner here to benchmark it. */
export const RUNNERS: Record<string, RunnerFactory> = {
  taskmesh: taskmeshRunner,
  "taskmesh-traced": (infra) => taskmeshRunner(infra, { tracing: "all" }),
  "taskmesh-traced-10pct": (infra) => taskmeshRunner(infra, { tracing: "sampled" }),
  "graphile-worker": graphileWorkerRunner,
  "pg-boss": pgBossRunner,
  bullmq: bullmqRunner,
};
