/** The input every benchmark job carries; the echo handler returns it unchanged. */
export const ECHO_INPUT = Object.freeze({ text: "hi" });

/** The payload of an echo job. */
export type EchoInput = typeof ECHO_INPUT;

/** What a burst measured: `tasks` no-op jobs enqueued at once and run to completion. */
export interface BurstResult {
  /** How many jobs were enqueued. */
  readonly tasks: number;
  /** From the start of the enqueue until the last job had completed, in seconds. */
  readonly seconds: number;
  /** `tasks / seconds`. */
  readonly tasksPerSec: number;
}

/** What a steady open-loop run measured: one job at a time on a fixed schedule. */
export interface SteadyResult {
  /** The target submission rate, in jobs per second. */
  readonly rate: number;
  /** How many jobs were submitted (all of them completed, or the run failed). */
  readonly submitted: number;
  /** Median latency from the start of the submit call to the completion seen by the submitter, in ms. */
  readonly p50Ms: number;
  /** 99th percentile of the same latency, in ms. */
  readonly p99Ms: number;
  /** Largest latency seen, in ms. */
  readonly maxMs: number;
  /** Median latency of the jobs submitted in the first third of the run, in ms. */
  readonly firstThirdP50Ms: number;
  /** Median latency of the jobs submitted in the last third: far above the first third's when the runner falls behind. */
  readonly lastThirdP50Ms: number;
}

/**
 * The shape of the workflow measured: a tree of `tasks` no-op jobs, one
 * root that runs after {@link WORKFLOW_PARENTS} parents, each of which runs
 * after its share of the leaves; each parent and the root take their
 * children's outputs as input (BullMQ: a flow whose parents read their
 * children's values; taskmesh: a workflow whose tasks reference them).
 */
export const WORKFLOW_PARENTS = 10;

/** The leaves under each of the {@link WORKFLOW_PARENTS} parents of a `tasks`-job tree (root and parents not counted). */
export function workflowLeaves(tasks: number): number[] {
  const leaves = tasks - 1 - WORKFLOW_PARENTS;
  if (leaves < WORKFLOW_PARENTS) throw new Error(`a workflow needs at least ${2 * WORKFLOW_PARENTS + 1} tasks`);
  return Array.from({ length: WORKFLOW_PARENTS }, (_, p) => Math.floor(leaves / WORKFLOW_PARENTS) + (p < leaves % WORKFLOW_PARENTS ? 1 : 0));
}

/** What one workflow took: from the start of its submit until its root had completed. */
export interface WorkflowResult {
  readonly tasks: number;
  readonly seconds: number;
  readonly tasksPerSec: number;
}

/**
 * One job queue under test, already connected and with its echo worker
 * running in this process. Runs are sequential: `burst` and `steady` are
 * never called concurrently on one runner.
 */
export interface QueueRunner {
  /** Name shown in the results table. */
  readonly name: string;
  /** Enqueues `n` echo jobs as fast as the library allows (bulk APIs allowed) and waits for the last to complete. */
  burst(n: number): Promise<BurstResult>;
  /** Submits echo jobs one at a time at `ratePerSec` for `durationSec` seconds (open loop) and reports their latencies. */
  steady(ratePerSec: number, durationSec: number): Promise<SteadyResult>;
  /** Runs one tree of `tasks` jobs (see {@link workflowLeaves}) end to end; absent for a queue without dependencies between jobs. */
  workflow?(tasks: number): Promise<WorkflowResult>;
  /** Stops the worker and closes every connection the runner opened. */
  close(): Promise<void>;
}
