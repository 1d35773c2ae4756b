import { availableParallelism, cpus, loadavg } from "node:os";
import type { BurstResult, SteadyResult, WorkflowResult } from "./runner.js";

/** Everything measured for one runner. */
export interface RunnerReport {
  readonly name: string;
  readonly burst: BurstResult;
  readonly steady: readonly SteadyResult[];
  /** The workflow tree's median run, and each run's seconds; absent for a runner without dependencies. */
  readonly workflow?: WorkflowResult & { readonly runs: readonly number[] };
}

/** A runner that could not be measured, and why. */
export interface RunnerFailure {
  readonly name: string;
  readonly error: string;
}

/** `nproc 2, AMD EPYC …, Node v24.x`: the machine the numbers came from. */
export function machineLine(): string {
  return `nproc ${availableParallelism()}, ${cpus()[0]?.model.trim() ?? "unknown CPU"}, Node ${process.version}`;
}

/** The 1-minute load average, rounded: other work on the machine shows here. */
export function loadAverage(): number {
  return Math.round((loadavg()[0] ?? 0) * 100) / 100;
}

const ms = (value: number): string => (value < 10 ? value.toFixed(1) : value.toFixed(0));

/** The Markdown results table: one row per measured runner, one latency column per steady rate. */
export function markdownTable(reports: readonly RunnerReport[], rates: readonly number[]): string {
  const head = ["runner", "burst tasks/s", ...rates.map((rate) => `steady ${rate}/s p50 / p99`)];
  const rows = reports.map((report) => [
    report.name,
    `${report.burst.tasksPerSec.toLocaleString("en-US")} (${report.burst.tasks.toLocaleString("en-US")} in ${report.burst.seconds.toFixed(2)} s)`,
    ...rates.map((rate) => {
      const steady = report.steady.find((result) => result.rate === rate);
      return steady ? `${ms(steady.p50Ms)} / ${ms(steady.p99Ms)} ms` : "not run";
    }),
  ]);
  return [head, head.map(() => "---"), ...rows].map((cells) => `| ${cells.join(" | ")} |`).join("\n");
}
