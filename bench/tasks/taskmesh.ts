import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, readdirSync, rmSync, chmodSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import pg from "pg";
import { TaskServiceService, type SubmitWorkflowRequest } from "@taskmesh/contracts/gen/taskmesh/coordinator/v1/task_service";
import { checkHealth } from "@taskmesh/local/health";
import { serviceArgs } from "@taskmesh/local/plan";
import { ROOT } from "@taskmesh/local/provision/versions";
import { jaegerSpec } from "@taskmesh/local/provision/jaeger";
import { ensureKafka, kafkaSpec } from "@taskmesh/local/provision/kafka";
import { freePort } from "@taskmesh/local/secrets";
import { Supervisor } from "@taskmesh/local/supervisor";
import { createClient, type MeshClient } from "@taskmesh/kit";
import { killGroups, type Infra } from "./infra.js";
import { within } from "./measure.js";
import { ECHO_INPUT, workflowLeaves, type BurstResult, type QueueRunner, type SteadyResult, type WorkflowResult } from "./runner.js";
import { summarize, thirds } from "./stats.js";

/** How the taskmesh stack under test is shaped. */
const WORKERS = 2;
const WORKER_CONCURRENCY = 128;
/** Tasks per SubmitTasks call during a burst, and calls in flight (within the coordinator's 2000 submits in progress). */
const BULK = 500;
const BULK_IN_FLIGHT = 4;
const CHANNELS = 4;

type TaskClient = MeshClient<typeof TaskServiceService>;

/**
 * taskmesh as a user runs it, minus the mesh: a real ledger (with its outbox
 * relay to a real Kafka broker), one coordinator and two worker processes
 * running the built-in `echo`. The burst submits through
 * TaskService/SubmitTasks (500 per call, as the peers use their bulk
 * calls); the steady runs through SubmitTask, one task per call. A task
 * counts as done when the ledger has recorded it SUCCEEDED; latency runs
 * from the start of the submit call to the ledger's `finished_at` (same host
 * clock).
 */
export async function taskmeshRunner(infra: Infra, options: { tracing?: "all" | "sampled" } = {}): Promise<QueueRunner> {
  const dbName = `bench_taskmesh_${randomBytes(4).toString("hex")}`;
  const admin = new pg.Client({ connectionString: infra.postgresAdminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${dbName}`);
  await admin.end();
  const dbUrl = new URL(infra.postgresAdminUrl);
  dbUrl.pathname = `/${dbName}`;
  const databaseUrl = dbUrl.toString();

  await ensureKafka();
  const dir = mkdtempSync(join(tmpdir(), "taskmesh-bench-kafka-"));
  chmodSync(dir, 0o755);
  const supervisor = new Supervisor({ logDir: join(dir, "logs"), restart: false });
  const kafkaPort = await freePort();
  await supervisor.start([kafkaSpec({ dataDir: join(dir, "kafka"), logDir: join(dir, "logs"), port: kafkaPort, controllerPort: await freePort() })]);
  // Tracing off: the OpenTelemetry SDK is not started at all. On: every span
  // of every trace ("all", as in development) or of 10% of them ("sampled")
  // is recorded, batched and exported over OTLP to a real Jaeger collector.
  let telemetry: Record<string, string> = { OTEL_SDK_DISABLED: "true" };
  if (options.tracing) {
    const otlpGrpcPort = await freePort();
    await supervisor.start([jaegerSpec({
      stateDir: join(dir, "jaeger"), logDir: join(dir, "logs"), uiPort: await freePort(), otlpGrpcPort, otlpHttpPort: await freePort(), queryGrpcPort: await freePort(),
    })]);
    telemetry = {
      OTEL_TRACES_EXPORTER: "otlp", OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${otlpGrpcPort}`,
      // "sampled": 10% of traces, as production would run (TASKMESH_TRACE_SAMPLING=10 under up).
      ...(options.tracing === "all" ? { OTEL_TRACES_SAMPLER: "parentbased_always_on" } : { OTEL_TRACES_SAMPLER: "parentbased_traceidratio", OTEL_TRACES_SAMPLER_ARG: "0.1" }),
    };
  }

  const name = options.tracing === "all" ? "taskmesh-traced" : options.tracing === "sampled" ? "taskmesh-traced-10pct" : "taskmesh";
  const children: ChildProcess[] = [];
  const named = new Map<string, ChildProcess>();
  // However this process ends (a crash included), nothing it started is left running.
  const killOnExit = (): void => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
    killGroups(supervisor);
  };
  process.once("exit", killOnExit);
  // TASKMESH_BENCH_CPU_PROF=<dir>: every service writes a V8 CPU profile there when it stops (open in Chrome DevTools).
  const profileDir = process.env.TASKMESH_BENCH_CPU_PROF;
  const start = async (service: string, env: Record<string, string>, label = service): Promise<void> => {
    const port = await freePort();
    const profile = profileDir ? ["--cpu-prof", `--cpu-prof-dir=${profileDir}`, `--cpu-prof-name=${name}-${label}.cpuprofile`] : [];
    const child = spawn(process.execPath, [...profile, ...serviceArgs(service)], {
      cwd: ROOT, stdio: ["ignore", "ignore", "inherit"],
      env: { ...process.env, ...telemetry, LOG_LEVEL: "warn", TASKMESH_LISTEN: `127.0.0.1:${port}`, ...env },
    });
    children.push(child);
    named.set(label, child);
    const address = `127.0.0.1:${port}`;
    const deadline = Date.now() + 60_000;
    while ((await checkHealth(address)) !== "SERVING") {
      if (child.exitCode !== null) throw new Error(`${service} exited with ${child.exitCode}`);
      if (Date.now() > deadline) throw new Error(`${service} not SERVING after 60 s`);
      await sleep(100);
    }
    addresses.set(service, address);
  };
  const addresses = new Map<string, string>();
  await start("ledger", { DATABASE_URL: databaseUrl, KAFKA_BROKERS: `127.0.0.1:${kafkaPort}` });
  await start("coordinator", { DATABASE_URL: databaseUrl, REDIS_URL: infra.redisUrl, TASKMESH_UPSTREAM_LEDGER: addresses.get("ledger")!, TASKMESH_COORDINATOR_MAX_PENDING: "1000000" });
  for (let i = 0; i < WORKERS; i++) {
    await start("worker", {
      TASKMESH_UPSTREAM_COORDINATOR: addresses.get("coordinator")!, TASKMESH_WORKER_ID: `bench-${i}`,
      TASKMESH_WORKER_CAPABILITIES: "echo", TASKMESH_WORKER_CONCURRENCY: String(WORKER_CONCURRENCY),
    }, `worker-${i}`);
  }
  /** CPU seconds so far of each taskmesh process, Postgres (all its processes), Redis (the coordinator's bus and submit dedup) and the Kafka broker. */
  const cpu = (): Map<string, number> => {
    const out = new Map<string, number>([...named].map(([label, child]) => [label, cpuSeconds(child.pid)]));
    out.set("postgres", postgresCpuSeconds());
    out.set("redis", cpuSecondsOf((s) => s.comm === "redis-server"));
    const kafka = supervisor.status().find((p) => p.name === "kafka")?.pid;
    out.set("kafka", kafka === undefined ? 0 : groupCpuSeconds(kafka));
    return out;
  };
  // Distinct channels (one HTTP/2 connection each) so submits are not serialized on one.
  const clients: TaskClient[] = Array.from({ length: CHANNELS }, (_, i) => createClient(TaskServiceService, addresses.get("coordinator")!, {
    channelOptions: { "grpc.use_local_subchannel_pool": 1, "taskmesh.bench_channel": i },
  }));
  const sql = new pg.Pool({ connectionString: databaseUrl, max: 2 });
  let turn = 0;
  const echoRequest = () => ({
    capability: "echo", input: { ...ECHO_INPUT }, idempotencyKey: "", maxAttempts: undefined, timeout: undefined, priority: 0, labels: {}, retryPolicy: undefined,
  });
  const submit = async (): Promise<string> => {
    const { task } = await clients[turn++ % CHANNELS]!.submitTask(echoRequest(), { timeoutMs: 30_000 });
    return task!.id;
  };
  // Whether any task is unfinished: the first entry of the partial indexes of pending and leased tasks
  // (a count would read every entry, tens of milliseconds per poll with 50,000 pending), so watching a
  // drain does not slow it down.
  const unfinished = async (): Promise<boolean> => Boolean((await sql.query<{ any: boolean }>(
    `SELECT EXISTS (SELECT 1 FROM ledger.tasks WHERE state = 'PENDING' AND lease_id IS NULL)
         OR EXISTS (SELECT 1 FROM ledger.tasks WHERE lease_id IS NOT NULL AND state IN ('PENDING', 'RUNNING')) AS any`)).rows[0]?.any);

  /** Prints each process's CPU per task since `before` (a {@link cpu} snapshot), over `n` tasks. */
  const printCpuPerTask = (what: string, before: Map<string, number>, n: number): void => {
    const perTask = [...cpu()].map(([label, total]) => [label, ((total - (before.get(label) ?? 0)) * 1000) / n] as const);
    const sum = perTask.reduce((acc, [, ms]) => acc + ms, 0);
    process.stderr.write(`bench:tasks: ${name}: ${what}: CPU per task ${perTask.map(([label, ms]) => `${label} ${ms.toFixed(3)} ms`).join(", ")}; total ${sum.toFixed(3)} ms\n`);
  };

  return {
    name,

    async burst(n: number): Promise<BurstResult> {
      const statementStats = process.env.TASKMESH_BENCH_PG_STATS ? await resetStatementStats(sql) : false;
      // The burst's tasks are those SUCCEEDED beyond the ones before it (their created_at is the ledger's clock, which may
      // read a fraction of a millisecond behind this process's).
      const { rows: [before] } = await sql.query<{ done: number }>("SELECT count(*)::int AS done FROM ledger.tasks WHERE state = 'SUCCEEDED'");
      const cpuBefore = cpu();
      const t0 = performance.now();
      // Like the peers' bulk enqueue: SubmitTasks with BULK tasks per call, BULK_IN_FLIGHT calls at once.
      let left = n;
      const lane = async (): Promise<void> => {
        while (left > 0) {
          const size = Math.min(BULK, left);
          left -= size;
          const { results } = await clients[turn++ % CHANNELS]!.submitTasks({ tasks: Array.from({ length: size }, echoRequest) }, { timeoutMs: 60_000 });
          const failed = results.find((r) => r.result?.$case !== "response");
          if (failed) throw new Error(`a bulk submit item failed: ${JSON.stringify(failed.result)}`);
        }
      };
      await Promise.all(Array.from({ length: BULK_IN_FLIGHT }, lane));
      // Polled every 250 ms; the drain ends at the last task's finished_at as the ledger recorded it (same host
      // clock), so the poll interval does not add to the time.
      const waits = new Map<string, number>();
      await within((async () => {
        while (await unfinished()) {
          if (statementStats) await sampleWaits(sql, waits);
          await sleep(250);
        }
      })(), 60_000 + n * 2, `taskmesh burst of ${n}`).finally(() => {
        for (const [what, count] of [...waits].sort((a, b) => b[1] - a[1]).slice(0, 12)) process.stderr.write(`bench:tasks: ${name}: pg busy ${count}× ${what}\n`);
      });
      const { rows: [end] } = await sql.query<{ done: number; last: number | null }>(
        "SELECT count(*)::int - $1 AS done, (extract(epoch FROM max(finished_at)) * 1000)::float8 AS last FROM ledger.tasks WHERE state = 'SUCCEEDED'",
        [before!.done]);
      if (!end || end.done < n || end.last === null) throw new Error(`taskmesh burst of ${n}: only ${end?.done ?? 0} tasks SUCCEEDED`);
      const seconds = Math.max(performance.now() - t0 - (Date.now() - Number(end.last)), 1) / 1000;
      // Where the CPU went during the burst (it includes the poll above and what the relay still had to send).
      printCpuPerTask(`burst of ${n}`, cpuBefore, n);
      if (statementStats) await printStatementStats(sql, name, n);
      return { tasks: n, seconds: Math.round(seconds * 1000) / 1000, tasksPerSec: Math.round(n / seconds) };
    },

    async steady(rate: number, durationSec: number): Promise<SteadyResult> {
      const total = Math.round(rate * durationSec);
      const intervalMs = 1000 / rate;
      const statementStats = process.env.TASKMESH_BENCH_PG_STATS ? await resetStatementStats(sql) : false;
      const cpuBefore = cpu();
      const started = new Map<string, number>();
      const answered = new Map<string, number>();
      const failures: unknown[] = [];
      const pending: Promise<void>[] = [];
      const t0 = performance.now();
      let submitted = 0;
      while (submitted < total) {
        const now = performance.now();
        while (submitted < total && t0 + submitted * intervalMs <= now) {
          const at = Date.now();
          pending.push(submit().then((id) => {
            started.set(id, at);
            answered.set(id, Date.now());
          }, (error: unknown) => void failures.push(error)));
          submitted++;
        }
        if (submitted < total) await sleep(Math.max(0, t0 + submitted * intervalMs - performance.now()));
      }
      await Promise.all(pending);
      if (failures.length > 0) throw new Error(`taskmesh steady ${rate}/s: ${failures.length} of ${total} submits failed, the first: ${String(failures[0])}`);
      const ids = [...started.keys()];
      const finished = async (): Promise<Array<{ id: string; at: number; created: number }>> => (await sql.query<{ id: string; at: number; created: number }>(
        `SELECT id, (extract(epoch FROM finished_at) * 1000)::float8 AS at, (extract(epoch FROM created_at) * 1000)::float8 AS created
         FROM ledger.tasks WHERE id = ANY($1::uuid[]) AND state = 'SUCCEEDED'`, [ids])).rows;
      let rows = await finished();
      await within((async () => {
        while (rows.length < ids.length) {
          await sleep(50);
          rows = await finished();
        }
      })(), 60_000, `taskmesh steady ${rate}/s`);
      // Where the time went: the submit call until its batch's transaction began (created_at), until the call was
      // answered (the commit), and from the commit's start to SUCCEEDED (claim, run, completion batch).
      const stage = (label: string, ms: (r: (typeof rows)[number]) => number): string => {
        const { p50Ms, p99Ms } = summarize(rows.map(ms));
        return `${label} p50 ${p50Ms} / p99 ${p99Ms} ms`;
      };
      // Where the CPU went, per task, from the first submit until the last task SUCCEEDED (single submits: each batch is small).
      printCpuPerTask(`steady ${rate}/s`, cpuBefore, total);
      if (statementStats) await printStatementStats(sql, name, total);
      process.stderr.write(`bench:tasks: ${name}: steady ${rate}/s stages: ${[
        stage("call → submit transaction", (r) => r.created - started.get(r.id)!),
        stage("call → answered", (r) => answered.get(r.id)! - started.get(r.id)!),
        stage("submit transaction → SUCCEEDED", (r) => r.at - r.created),
      ].join("; ")}\n`);
      const latencies = rows.map((r) => ({ start: started.get(r.id)!, ms: r.at - started.get(r.id)! })).sort((a, b) => a.start - b.start).map((l) => l.ms);
      return { rate, submitted, ...summarize(latencies), ...thirds(latencies) };
    },

    async workflow(tasks: number): Promise<WorkflowResult> {
      // One SubmitWorkflow: the leaves first, each parent after its leaves taking their outputs, the root after the parents.
      const task = (input: Record<string, unknown>) => ({ ...echoRequest(), input });
      const spec: SubmitWorkflowRequest["tasks"] = [];
      workflowLeaves(tasks).forEach((n, p) => {
        const leaves = Array.from({ length: n }, (_, i) => `leaf-${p}-${i}`);
        for (const name of leaves) spec.push({ name, dependsOn: [], task: task({ ...ECHO_INPUT }) });
        spec.push({ name: `parent-${p}`, dependsOn: leaves, task: task(Object.fromEntries(leaves.map((l) => [l, { $ref: l }]))) });
      });
      const parents = spec.filter((t) => t.name.startsWith("parent-")).map((t) => t.name);
      spec.push({ name: "root", dependsOn: parents, task: task(Object.fromEntries(parents.map((p) => [p, { $ref: p }]))) });
      const startedAt = Date.now();
      const { workflow } = await clients[0]!.submitWorkflow({ tasks: spec, failurePolicy: 0, idempotencyKey: "", name: "bench", labels: {} }, { timeoutMs: 60_000 });
      const root = workflow!.nodes.find((n) => n.name === "root")!.taskId;
      let finishedAt: number | undefined;
      await within((async () => {
        for (;;) {
          const { rows: [row] } = await sql.query<{ state: string; at: number | null }>(
            "SELECT state, (extract(epoch FROM finished_at) * 1000)::float8 AS at FROM ledger.tasks WHERE id = $1", [root]);
          if (row?.state === "SUCCEEDED") {
            finishedAt = row.at!;
            return;
          }
          if (row && row.at !== null) throw new Error(`taskmesh workflow: its root ended ${row.state}`);
          await sleep(20);
        }
      })(), 120_000, `taskmesh workflow of ${tasks}`);
      // From the submit call's start to the root's finished_at as the ledger recorded it (same host clock).
      const seconds = Math.max(finishedAt! - startedAt, 1) / 1000;
      return { tasks, seconds: Math.round(seconds * 1000) / 1000, tasksPerSec: Math.round(tasks / seconds) };
    },

    async close(): Promise<void> {
      process.removeListener("exit", killOnExit);
      // Where the CPU went over the runner's life (services vs. the trace collector), for the tracing-cost comparison.
      const jaeger = supervisor.status().find((p) => p.name === "jaeger")?.pid;
      const services = children.reduce((sum, c) => sum + cpuSeconds(c.pid), 0);
      process.stderr.write(`bench:tasks: ${name}: CPU ${services.toFixed(1)} s in the taskmesh services${jaeger ? `, ${cpuSeconds(jaeger).toFixed(1)} s in Jaeger` : ""}\n`);
      for (const c of clients) c.close();
      await sql.end();
      for (const child of children.reverse()) {
        child.kill("SIGTERM");
        await new Promise((r) => (child.exitCode !== null ? r(null) : child.once("exit", r)));
      }
      await supervisor.stop();
      rmSync(dir, { recursive: true, force: true });
      const drop = new pg.Client({ connectionString: infra.postgresAdminUrl });
      await drop.connect();
      await drop.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
      await drop.end();
    },
  };
}

/** Creates pg_stat_statements in the benchmark's database (when Postgres loaded it) and empties it. */
async function resetStatementStats(sql: pg.Pool): Promise<boolean> {
  try {
    await sql.query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
    await sql.query("SELECT pg_stat_statements_reset(), pg_stat_reset_shared('wal')");
    return true;
  } catch (error) {
    process.stderr.write(`bench:tasks: no statement statistics: ${String(error)}\n`);
    return false;
  }
}

/** Counts what the database's busy connections are doing right now (wait event and statement), into `into`. */
async function sampleWaits(sql: pg.Pool, into: Map<string, number>): Promise<void> {
  const { rows } = await sql.query<{ what: string }>(
    `SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU') || ' ' || left(regexp_replace(query, '\\s+', ' ', 'g'), 70) AS what
     FROM pg_stat_activity WHERE datname = current_database() AND state = 'active' AND pid <> pg_backend_pid()`);
  for (const { what } of rows) into.set(what, (into.get(what) ?? 0) + 1);
}

/** The statements the last burst (or steady run) spent the most time in: calls, rows, time and WAL per task; and all WAL written per task. */
async function printStatementStats(sql: pg.Pool, name: string, n: number): Promise<void> {
  const { rows: [wal] } = await sql.query<{ bytes: string; fpi: string }>("SELECT wal_bytes AS bytes, wal_fpi AS fpi FROM pg_stat_wal");
  process.stderr.write(`bench:tasks: ${name}: pg WAL ${Math.round(Number(wal!.bytes) / n)} B/task, ${(Number(wal!.fpi) / n).toFixed(2)} full-page images/task\n`);
  const { rows } = await sql.query<{ query: string; calls: string; rows: string; ms: number; plan: number; wal: string }>(
    `SELECT regexp_replace(query, '\\s+', ' ', 'g') AS query, calls, rows, total_exec_time AS ms, total_plan_time AS plan, wal_bytes AS wal FROM pg_stat_statements
     WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) ORDER BY total_exec_time DESC LIMIT 15`);
  for (const r of rows) {
    process.stderr.write(`bench:tasks: ${name}: pg ${(r.ms * 1000 / n).toFixed(1)} µs/task (planning ${(r.plan * 1000 / n).toFixed(1)} more), WAL ${Math.round(Number(r.wal) / n)} B/task, ${r.calls} calls, ${r.rows} rows: ${r.query.slice(0, 160)}\n`);
  }
}

/** What /proc/<pid>/stat says of a live process: its name, process group and CPU seconds (user + system); undefined once it is gone. */
function procStat(pid: number | string): { comm: string; pgrp: number; cpu: number } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const close = stat.lastIndexOf(")");
    const fields = stat.slice(close + 2).split(" ");
    return { comm: stat.slice(stat.indexOf("(") + 1, close), pgrp: Number(fields[2]), cpu: (Number(fields[11]) + Number(fields[12])) / 100 };
  } catch {
    return undefined;
  }
}

/** CPU seconds of the live processes `include` picks (reading every process's stat once). */
function cpuSecondsOf(include: (stat: { comm: string; pgrp: number }) => boolean): number {
  let total = 0;
  for (const pid of readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
    const stat = procStat(pid);
    if (stat && include(stat)) total += stat.cpu;
  }
  return total;
}

/** CPU seconds of every process of a process group (the Kafka JVM runs under the supervisor's group leader). */
function groupCpuSeconds(leader: number): number {
  return cpuSecondsOf((s) => s.pgrp === leader);
}

/** CPU seconds of every live Postgres process on the machine (the benchmark's is the only one). */
function postgresCpuSeconds(): number {
  return cpuSecondsOf((s) => s.comm === "postgres");
}

/** User + system CPU time of a live process, in seconds (Linux /proc; 0 when unknown). */
function cpuSeconds(pid: number | undefined): number {
  return pid === undefined ? 0 : (procStat(pid)?.cpu ?? 0);
}
