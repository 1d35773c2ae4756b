import { readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import type { CompletionLog } from "./completions.js";
import type { BurstResult, SteadyResult } from "./runner.js";
import { summarize, thirds } from "./stats.js";

/** How a runner enqueues, in the shape the shared burst driver needs. */
export interface BurstPlan {
  /** Where the in-process worker records completions. */
  readonly completions: CompletionLog;
  /** Enqueues `count` echo jobs (one bulk call or a few). */
  readonly enqueue: (count: number) => Promise<void>;
  /** How many jobs the queue's own storage still holds as not finished (queued or running). */
  readonly unfinished: () => Promise<number>;
  /** Jobs per bulk call. @default 1000 */
  readonly chunk?: number;
  /** Bulk calls in flight at once. @default 4 */
  readonly parallel?: number;
}

/** Longest wait for jobs to finish after the last was enqueued, per 1000 jobs, in ms (plus a fixed minute). */
const DRAIN_MS_PER_1000 = 2_000;

/** Rejects with a message naming `what` when `promise` has not settled within `ms`. */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not done after ${(ms / 1000).toFixed(0)} s`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Runs `work(size)` over `total` items in chunks of `chunk`, at most `parallel` at a time. */
async function inChunks(total: number, chunk: number, parallel: number, work: (size: number) => Promise<void>): Promise<void> {
  let left = total;
  const lane = async (): Promise<void> => {
    while (left > 0) {
      const size = Math.min(chunk, left);
      left -= size;
      await work(size);
    }
  };
  await Promise.all(Array.from({ length: parallel }, lane));
}

/**
 * Enqueues `n` jobs in bulk and times from the first enqueue call until the
 * worker has reported all `n` completed and the queue's storage holds none of
 * them unfinished (which covers libraries that write completions in batches
 * after the handler returns).
 */
export async function measureBurst(n: number, plan: BurstPlan): Promise<BurstResult> {
  const { completions, enqueue, unfinished, chunk = 1000, parallel = 4 } = plan;
  completions.reset();
  completions.keepUnclaimed = false;
  const done = completions.next(n);
  const t0 = performance.now();
  await inChunks(n, chunk, parallel, enqueue);
  await within(done, 60_000 + (n / 1000) * DRAIN_MS_PER_1000, `burst of ${n}`);
  while ((await unfinished()) > 0) await sleep(2);
  const seconds = (performance.now() - t0) / 1000;
  return { tasks: n, seconds: Math.round(seconds * 1000) / 1000, tasksPerSec: Math.round(n / seconds) };
}

/**
 * Open loop: job i is submitted at `i / rate` seconds after the start
 * whether or not earlier ones have completed (late timers submit every job
 * that is due at once). `submit` resolves with the `performance.now()` time
 * of the job's completion; latency runs from the start of the submit call.
 */
export async function measureSteady(rate: number, durationSec: number, completions: CompletionLog, submit: () => Promise<number>): Promise<SteadyResult> {
  if (!(rate > 0) || !(durationSec > 0)) throw new RangeError("rate and duration must be positive");
  completions.reset();
  completions.keepUnclaimed = true;
  const total = Math.round(rate * durationSec);
  const intervalMs = 1000 / rate;
  const latencies: number[] = [];
  const inFlight: Promise<void>[] = [];
  const t0 = performance.now();
  let submitted = 0;
  while (submitted < total) {
    const now = performance.now();
    while (submitted < total && t0 + submitted * intervalMs <= now) {
      const start = performance.now();
      const index = submitted;
      inFlight.push(submit().then((completedAt) => void (latencies[index] = completedAt - start)));
      submitted += 1;
    }
    const wait = t0 + submitted * intervalMs - performance.now();
    if (submitted < total) await sleep(Math.max(0, wait));
  }
  await within(Promise.all(inFlight), 60_000, `steady ${rate}/s`);
  completions.keepUnclaimed = false;
  return { rate, submitted, ...summarize(latencies), ...thirds(latencies) };
}

/** Busy and total CPU ticks of the whole machine so far (/proc/stat; idle and iowait count as not busy). */
function machineTicks(): { busy: number; total: number } {
  const fields = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1, 9).map(Number);
  const total = fields.reduce((a, b) => a + b, 0);
  return { busy: total - fields[3]! - fields[4]!, total };
}

/**
 * Waits until the machine is quiet: less than `threshold` of all its CPU
 * busy over a `windowMs` window (what the burst before left behind, such as
 * a relay still publishing or Postgres vacuuming, done), for at most
 * `maxMs`. Answers how long it waited and the busy share of the last window,
 * so a steady run measures a steady state for every runner alike.
 */
export async function machineQuiet(threshold = 0.15, windowMs = 500, maxMs = 60_000): Promise<{ waitedMs: number; busy: number }> {
  const t0 = performance.now();
  for (;;) {
    const a = machineTicks();
    await sleep(windowMs);
    const b = machineTicks();
    const busy = b.total === a.total ? 0 : (b.busy - a.busy) / (b.total - a.total);
    if (busy < threshold || performance.now() - t0 > maxMs) return { waitedMs: Math.round(performance.now() - t0), busy };
  }
}
