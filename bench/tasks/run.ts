import { Command, InvalidArgumentError } from "commander";
import { RUNNERS } from "./runners.js";
import { checkpoint, serverVersions, startInfra, type StartedInfra } from "./infra.js";
import { loadAverage, machineLine, markdownTable, type RunnerFailure, type RunnerReport } from "./report.js";
import { WORKFLOW_PARENTS, type SteadyResult } from "./runner.js";
import { machineQuiet } from "./measure.js";

/** Options of one `bench:tasks` run, after defaults. */
interface BenchOptions {
  readonly peers: readonly string[];
  readonly burst: number;
  readonly rates: readonly number[];
  readonly duration: number;
  /** Tasks in the workflow tree each runner with dependencies runs (0: none). */
  readonly workflow: number;
  readonly json: boolean;
}

/** Workflows run per runner after one warm-up; the median is reported. */
const WORKFLOW_RUNS = 3;

/** Jobs run once before measuring, so connections, prepared statements and JIT are warm. */
const WARMUP_JOBS = 1000;

const positiveInt = (value: string): number => {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError("a positive integer");
  return n;
};
const list = (value: string): string[] => value.split(",").map((item) => item.trim()).filter(Boolean);

function parseOptions(argv: readonly string[]): BenchOptions {
  const program = new Command("bench:tasks")
    .description("Throughput and latency of task queues on a local Postgres and Redis")
    .option("--peers <names>", `runners to measure, comma-separated (${Object.keys(RUNNERS).join(", ")})`, list, Object.keys(RUNNERS))
    .option("--burst <n>", "jobs per burst", positiveInt)
    .option("--rates <list>", "steady submission rates, jobs per second", (value) => list(value).map(positiveInt), [500, 1000])
    .option("--duration <seconds>", "length of each steady run", positiveInt)
    .option("--workflow <n>", "tasks of the workflow tree (a root after 10 parents after their leaves) each runner with dependencies runs; 0 for none", (value) => (value === "0" ? 0 : positiveInt(value)), 1000)
    .option("--quick", "smoke run: burst 5000, duration 3 (explicit --burst/--duration win)", false)
    .option("--json", "print the results as JSON instead of Markdown", false)
    .parse([...argv], { from: "user" });
  const raw = program.opts<{ peers: string[]; burst?: number; rates: number[]; duration?: number; workflow: number; quick: boolean; json: boolean }>();
  const unknown = raw.peers.filter((name) => !(name in RUNNERS));
  if (unknown.length > 0) program.error(`unknown runner(s): ${unknown.join(", ")}; known: ${Object.keys(RUNNERS).join(", ")}`);
  return {
    peers: raw.peers,
    burst: raw.burst ?? (raw.quick ? 5000 : 50_000),
    rates: raw.rates,
    duration: raw.duration ?? (raw.quick ? 3 : 10),
    workflow: raw.workflow,
    json: raw.json,
  };
}

const log = (message: string): void => void process.stderr.write(`bench:tasks: ${message}\n`);

/** Measures one runner: a warm-up, the burst, then each steady rate; always closes it. */
async function measure(name: string, infra: StartedInfra, options: BenchOptions): Promise<RunnerReport> {
  const runner = await RUNNERS[name]!(infra);
  try {
    await runner.burst(Math.min(WARMUP_JOBS, options.burst));
    log(`${name}: burst of ${options.burst}`);
    const burst = await runner.burst(options.burst);
    log(`${name}: ${burst.tasksPerSec} tasks/s`);
    const steady: SteadyResult[] = [];
    for (const rate of options.rates) {
      const quiet = await machineQuiet();
      log(`${name}: steady ${rate}/s for ${options.duration} s (after ${(quiet.waitedMs / 1000).toFixed(1)} s for the machine to settle: ${(quiet.busy * 100).toFixed(0)}% of its CPU busy)`);
      const result = await runner.steady(rate, options.duration);
      log(`${name}: p50 ${result.p50Ms} ms, p99 ${result.p99Ms} ms, max ${result.maxMs} ms; p50 of the first third of submits ${result.firstThirdP50Ms} ms, of the last third ${result.lastThirdP50Ms} ms`);
      steady.push(result);
    }
    let workflow: RunnerReport["workflow"];
    if (runner.workflow && options.workflow > 0) {
      await machineQuiet();
      await runner.workflow(options.workflow); // warm-up
      const runs: number[] = [];
      for (let i = 0; i < WORKFLOW_RUNS; i++) {
        await machineQuiet();
        runs.push((await runner.workflow(options.workflow)).seconds);
      }
      const median = [...runs].sort((a, b) => a - b)[Math.floor(runs.length / 2)]!;
      workflow = { tasks: options.workflow, seconds: median, tasksPerSec: Math.round(options.workflow / median), runs };
      log(`${name}: workflow of ${options.workflow} tasks: ${runs.map((s) => `${s} s`).join(", ")} (median ${median} s)`);
    }
    return { name: runner.name, burst, steady, ...(workflow ? { workflow } : {}) };
  } finally {
    await runner.close();
  }
}

/** The whole run: infrastructure up, every runner in turn, infrastructure down (also on failure or a signal). */
async function main(argv: readonly string[]): Promise<number> {
  const options = parseOptions(argv);
  const command = ["npm run bench:tasks", ...(argv.length > 0 ? ["--", ...argv] : [])].join(" ");
  let infra: StartedInfra | undefined;
  let signalled = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (signalled) process.exit(130); // second signal: leave now
    signalled = true;
    log(`${signal}: stopping Postgres and Redis`);
    void (infra?.stop() ?? Promise.resolve()).finally(() => process.exit(130));
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  try {
    log("starting Postgres and Redis");
    infra = await startInfra(process.env.DATABASE_URL ? { externalPostgresUrl: process.env.DATABASE_URL } : {});
    const servers = await serverVersions(infra);
    const loadAtStart = loadAverage();
    const reports: RunnerReport[] = [];
    const failures: RunnerFailure[] = [];
    for (const name of options.peers) {
      try {
        await checkpoint(infra);
        reports.push(await measure(name, infra, options));
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error);
        log(`${name} failed: ${message}`);
        failures.push({ name, error: message });
      }
    }
    const machine = machineLine();
    const load = { start: loadAtStart, end: loadAverage() };
    if (options.json) {
      console.log(JSON.stringify({ command, machine, servers, load, options, reports, failures }, null, 2));
    } else {
      console.log(markdownTable(reports, options.rates));
      console.log();
      const workflows = reports.filter((r) => r.workflow);
      if (workflows.length > 0) {
        console.log();
        console.log(`Workflow of ${options.workflow} tasks (a root after ${WORKFLOW_PARENTS} parents, each after its share of the leaves, each taking its children's outputs), end to end, median of ${WORKFLOW_RUNS}: `
          + workflows.map((r) => `${r.name} ${r.workflow!.seconds.toFixed(3)} s (${r.workflow!.tasksPerSec.toLocaleString("en-US")} tasks/s; runs ${r.workflow!.runs.join(", ")} s)`).join("; "));
      }
      console.log(`Command: \`${command}\` (burst ${options.burst}, steady runs of ${options.duration} s)`);
      console.log(`Machine: ${machine}; ${servers}; 1-min load average ${load.start} at start, ${load.end} at end`);
      for (const failure of failures) console.log(`Not measured: ${failure.name}: ${failure.error}`);
    }
    return failures.length > 0 ? 1 : 0;
  } finally {
    await infra?.stop();
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}

process.exitCode = await main(process.argv.slice(2));
