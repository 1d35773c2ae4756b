import { spawn } from "node:child_process";
import { existsSync, mkdirSync, openSync, readdirSync, statSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Listr } from "listr2";
import pc from "picocolors";
import { parseAutoscale, startAutoscaler, type AutoscalePolicy } from "@taskmesh/local/autoscale";
import { buildPlan, type Replicas } from "@taskmesh/local/plan";
import type { ProcessSpec } from "@taskmesh/local/process-spec";
import { ensureJaeger, jaegerBuilt } from "@taskmesh/local/provision/jaeger";
import { ensureKafka } from "@taskmesh/local/provision/kafka";
import { ensurePythonWorker } from "@taskmesh/local/provision/python-worker";
import { ensureRedis } from "@taskmesh/local/provision/redis";
import { MissingPrerequisite, ROOT } from "@taskmesh/local/provision/versions";
import { localSecret } from "@taskmesh/local/secrets";
import {
  clearState, LOG_DIR, readState, recoverStaleRun, STATE_DIR, takeAgentsRequests, takeScaleRequest, writeState,
  type AgentsOutcome, type AgentsRequest, type RunState, type ScaleOutcome, type ScaleRequest,
} from "@taskmesh/local/state";
import { SpanBuffer } from "@taskmesh/local/span-buffer";
import { alive, Supervisor, type SupervisorEvent } from "@taskmesh/local/supervisor";
import { printAddresses } from "./inspect.js";
import { UsageError } from "@taskmesh/local/usage-error";

/** Options of `taskmesh up`. */
export interface UpOptions {
  /** Start in the background and return once everything is ready. */
  readonly detach?: boolean;
  /** Replicas per service, e.g. `{ config: 2 }`. */
  readonly replicas?: Readonly<Record<string, number>>;
  /** `worker=1..6`: the supervisor sizes that service's replicas from the queue (see packages/local/src/autoscale.ts). */
  readonly autoscale?: string;
  /** Agent modules, or folders of them: each runs on a worker of its own ({@link agentModules}), started with the rest. */
  readonly agents?: readonly string[];
}

/** What an agent module may be: TypeScript or JavaScript (defineAgent from @taskmesh/worker), or a worker in Python. */
const AGENT_MODULE = /\.(ts|mts|js|mjs|py)$/;

/**
 * The agent modules `--agents <path>` names: the file itself, or each such
 * file directly in the folder (sorted), as absolute paths (relative to the
 * folder taskmesh was run in). A usage error when there are none.
 */
export function agentModules(path: string, cwd = process.env.TASKMESH_CALLER_CWD ?? process.cwd()): string[] {
  const full = resolve(cwd, path);
  if (!existsSync(full)) throw new UsageError(`--agents: no file or folder at ${full}`);
  const modules = statSync(full).isDirectory()
    ? readdirSync(full).filter((f) => AGENT_MODULE.test(f) && !f.endsWith(".d.ts") && statSync(join(full, f)).isFile()).sort().map((f) => join(full, f))
    : [full];
  if (modules.length === 0) throw new UsageError(`--agents: no agent modules (.ts, .js, .mjs, .py) in ${full}`);
  return modules;
}

export { parseReplicas } from "./replicas.js";

/** `taskmesh up`: runs everything and supervises it until a signal (or, with -d, in the background). */
export async function up(options: UpOptions): Promise<number> {
  if (options.autoscale) parseAutoscale(options.autoscale); // bad input is refused here, before anything starts
  // Resolved here, where the user's folder is known; the background supervisor gets absolute paths.
  const agents = options.agents === undefined ? undefined : [...new Set(options.agents.flatMap((path) => agentModules(path)))];
  return options.detach ? upDetached(options, agents) : upForeground(options, agents);
}

async function upDetached(options: UpOptions, agents: readonly string[] | undefined): Promise<number> {
  const running = readState();
  if (running && alive(running.supervisorPid)) {
    console.error(`taskmesh is already running (supervisor pid ${running.supervisorPid}); stop it with: npx taskmesh down`);
    return 1;
  }
  mkdirSync(LOG_DIR, { recursive: true });
  const out = openSync(join(LOG_DIR, "taskmesh.log"), "a");
  const replicas = Object.entries(options.replicas ?? {}).map(([k, v]) => `${k}=${v}`).join(",");
  // The same command line as this one (the compiled CLI, or the TypeScript one under a loader).
  const child = spawn(process.execPath, [
    ...process.execArgv, process.argv[1]!, "up", ...(replicas ? ["--replicas", replicas] : []), ...(options.autoscale ? ["--autoscale", options.autoscale] : []),
    ...(agents ?? []).flatMap((module) => ["--agents", module]),
  ], {
    cwd: ROOT, detached: true, stdio: ["ignore", out, out], env: { ...process.env, NO_COLOR: "1" },
  });
  child.unref();
  console.log(`taskmesh: starting in the background (pid ${child.pid}; log .taskmesh/logs/taskmesh.log)…`);
  for (;;) {
    await new Promise((r) => setTimeout(r, 250));
    const state = readState();
    if (state && state.supervisorPid === child.pid && state.phase === "ready") {
      printAddresses(state);
      return 0;
    }
    if (state && state.supervisorPid === child.pid && state.phase === "failed") {
      console.error(`taskmesh: start-up failed: ${state.error ?? "see .taskmesh/logs"}`);
      return 1;
    }
    if (child.exitCode !== null || (child.pid !== undefined && !alive(child.pid))) {
      console.error("taskmesh: the supervisor exited during start-up; see .taskmesh/logs/taskmesh.log");
      return 1;
    }
  }
}

async function upForeground(options: UpOptions, agents: readonly string[] | undefined): Promise<number> {
  const autoscale: AutoscalePolicy | undefined = options.autoscale ? parseAutoscale(options.autoscale) : undefined;
  let recovered: string[];
  try {
    recovered = await recoverStaleRun();
  } catch (error) {
    console.error((error as Error).message);
    return 1;
  }
  if (recovered.length > 0) console.log(`taskmesh: cleaned up after a run that was killed (${recovered.join(", ")})`);
  mkdirSync(STATE_DIR, { recursive: true });
  const started = Date.now();
  let specs: readonly ProcessSpec[];
  let later: readonly ProcessSpec[];
  let replicas: Replicas;
  let databaseUrl: string;
  // On a first run Jaeger's build takes minutes: everything else starts without it, and its port holds the spans meanwhile.
  const jaegerLater = !jaegerBuilt();
  try {
    const external = process.env.DATABASE_URL?.trim();
    const plan = await buildPlan({
      stateDir: STATE_DIR,
      postgresPassword: localSecret(join(STATE_DIR, "postgres.password")),
      ...(options.replicas || autoscale ? { replicas: { ...options.replicas, ...(autoscale ? { [autoscale.service]: autoscale.min } : {}) } } : {}),
      ...(external ? { databaseUrl: external } : {}),
      jaegerLater,
    });
    specs = plan.specs;
    later = plan.later;
    replicas = plan.replicas;
    databaseUrl = plan.databaseUrl;
    const why = autoscale ? replicas.whyFixed(autoscale.service) : undefined;
    if (why) throw new Error(`--autoscale: ${why}`);
  } catch (error) {
    console.error(`taskmesh: ${error instanceof MissingPrerequisite ? error.message : (error as Error).stack}`);
    return 1;
  }

  const waiting = new Map<string, { resolve: (ms: number) => void; reject: (e: Error) => void; promise: Promise<number> }>();
  for (const spec of specs) {
    let resolve!: (ms: number) => void;
    let reject!: (e: Error) => void;
    const promise = new Promise<number>((res, rej) => ((resolve = res), (reject = rej)));
    promise.catch(() => undefined);
    waiting.set(spec.name, { resolve, reject, promise });
  }
  let phase: RunState["phase"] = "starting";
  let error: string | undefined;
  const supervisor = new Supervisor({
    logDir: LOG_DIR,
    onEvent: (event: SupervisorEvent) => {
      if (event.type === "ready") waiting.get(event.name)?.resolve(event.ms);
      if (event.type === "exited" && phase === "ready") {
        console.log(pc.yellow(`taskmesh: ${event.name} exited (${event.code ?? event.signal}); restarting in ${event.restartInMs ?? "—"} ms`));
      }
      if (event.type === "restarted") console.log(pc.green(`taskmesh: ${event.name} is back (restart ${event.restarts})`));
      if (event.type === "changed") save();
    },
  });
  /** Processes not handed to the supervisor yet: `building`, or `failed` when their build failed. */
  const building = new Map<string, "building" | "failed">(later.map((s) => [s.name, "building"]));
  let scaled: ScaleOutcome | undefined;
  /** The last agents requests' outcomes (`taskmesh worker`), newest last. */
  let agentsOutcomes: AgentsOutcome[] = [];
  const save = (): void => writeState({
    supervisorPid: process.pid, startedAt: new Date(started).toISOString(), phase, ...(error ? { error } : {}), ...(scaled ? { scale: scaled } : {}),
    ...(agentsOutcomes.length > 0 ? { agents: agentsOutcomes } : {}),
    processes: [
      ...supervisor.status().map(({ logFile: _log, ...s }) => s),
      ...later.filter((s) => building.has(s.name)).map((s) => ({ name: s.name, kind: s.kind, state: building.get(s.name)!, ports: s.ports })),
    ],
  });
  save();

  let stopping: Promise<void> | undefined;
  const stop = (code: number): Promise<void> => {
    stopping ??= (async () => {
      phase = "stopping";
      console.log("\ntaskmesh: stopping…");
      await supervisor.stop();
      clearState();
      console.log("taskmesh: stopped");
      process.exit(code);
    })();
    return stopping;
  };
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(signal, () => void stop(0));

  // Provision first, visibly: the first run on a machine fetches components (Jaeger's build comes up behind).
  const provisioning = new Listr([
    { title: "Kafka (Maven Central)", task: () => ensureKafka() },
    ...(jaegerLater ? [] : [{ title: "Jaeger (cached)", task: () => ensureJaeger() }]),
    { title: "Redis (Debian package)", task: () => ensureRedis() },
  ].map(({ title, task }) => ({
    title: `provision ${title}`,
    task: async (_: unknown, t: { title: string }) => {
      const t0 = Date.now();
      await task();
      t.title = `${title.split(" (")[0]} ${pc.dim(Date.now() - t0 > 1000 ? `provisioned in ${((Date.now() - t0) / 1000).toFixed(0)} s` : "cached")}`;
    },
  })), { concurrent: true, exitOnError: true });
  try {
    await provisioning.run();
  } catch (failure) {
    error = (failure as Error).message;
    phase = "failed";
    save();
    console.error(pc.red(`taskmesh: ${error}`));
    await stop(1);
    return 1;
  }

  if (jaegerLater) {
    console.log(pc.yellow("taskmesh: Jaeger is being built from the Go module proxy (first run: a few minutes); everything else starts now,"
      + " its port holds the spans meanwhile, and `taskmesh status` shows it as building"));
  }
  const jaegerBuild = jaegerLater ? await holdSpans(otlpGrpcPort(later)) : undefined;
  const tasks = new Listr(specs.map((spec) => ({
    title: spec.name,
    task: async (_: unknown, task: { title: string }) => {
      const ms = await waiting.get(spec.name)!.promise;
      task.title = `${spec.name} ${pc.dim(`ready in ${(ms / 1000).toFixed(1)} s`)}`;
    },
  })), { concurrent: true, exitOnError: false, rendererOptions: { collapseErrors: false } });
  const display = tasks.run().catch(() => undefined);
  try {
    await supervisor.start(specs);
  } catch (failure) {
    error = (failure as Error).message;
    for (const w of waiting.values()) w.reject(new Error("not started"));
    await display;
    phase = "failed";
    save();
    console.error(pc.red(`taskmesh: ${error}`));
    await stop(1);
    return 1;
  }
  await display;
  const agentWorkers = new Set<string>();
  for (const module of agents ?? []) {
    try {
      agentWorkers.add(await startAgents(supervisor, replicas, module));
    } catch (failure) {
      error = `the agents of ${module}: ${(failure as Error).message}`;
      phase = "failed";
      save();
      console.error(pc.red(`taskmesh: ${error}`));
      await stop(1);
      return 1;
    }
  }
  phase = "ready";
  save();
  if (jaegerBuild) {
    void jaegerBuild.built.then(async () => {
      if (phase === "stopping") return;
      building.clear();
      await supervisor.start(later);
      const { delivered, lost } = await jaegerBuild.buffer?.deliver(`127.0.0.1:${otlpGrpcPort(later)}`) ?? { delivered: 0, lost: 0 };
      console.log(pc.green(`taskmesh: Jaeger is up (${((Date.now() - started) / 1000).toFixed(0)} s after the start); ${delivered} span exports that waited for it`
        + ` were delivered${lost > 0 ? `, ${lost} lost (the buffer was full, or Jaeger refused them)` : ""}`));
    }).catch((failure: unknown) => {
      for (const name of building.keys()) building.set(name, "failed");
      console.error(pc.red(`taskmesh: Jaeger could not be built or started: ${(failure as Error).message}\nThe system runs without it: spans are dropped.`));
    }).finally(save);
  }
  console.log(pc.green(`taskmesh: ready in ${((Date.now() - started) / 1000).toFixed(1)} s`));
  printAddresses(readState()!);
  // `taskmesh scale` requests and the autoscaler's decisions, one at a time.
  let scaling: Promise<void> = Promise.resolve();
  const scaleSerially = (request: ScaleRequest): Promise<void> => {
    scaling = scaling.then(async () => {
      if (phase !== "ready") return;
      scaled = { ...request, outcome: "working" };
      save();
      try {
        await scale(supervisor, replicas, request);
        scaled = { ...request, outcome: "done" };
      } catch (failure) {
        scaled = { ...request, outcome: "failed", error: (failure as Error).message };
        console.error(pc.red(`taskmesh: scaling ${request.service} to ${request.replicas} failed: ${(failure as Error).message}`));
      } finally {
        save();
      }
    });
    return scaling;
  };
  /** Workers running agent modules (`--agents`, `taskmesh worker`), started and stopped one request at a time, in turn with scaling. */
  const agentsSerially = (request: AgentsRequest): Promise<void> => {
    const record = (outcome: AgentsOutcome): void => {
      agentsOutcomes = [...agentsOutcomes.filter((o) => o.id !== outcome.id), outcome].slice(-32);
      save();
    };
    scaling = scaling.then(async () => {
      if (phase !== "ready") return;
      const base = { id: request.id, action: request.action, ...(request.action === "start" ? { module: request.module } : { name: request.name }) };
      record({ ...base, outcome: "working" });
      try {
        const name = request.action === "start" ? await startAgents(supervisor, replicas, request.module) : request.name;
        if (request.action === "start") agentWorkers.add(name);
        else {
          if (!agentWorkers.has(name)) throw new Error(`no worker ${name} runs agents of its own (taskmesh status lists the processes)`);
          console.log(pc.dim(`taskmesh: stopping ${name}`));
          await supervisor.remove([name, `${name}-sidecar`]);
          agentWorkers.delete(name);
        }
        record({ ...base, name, outcome: "done" });
      } catch (failure) {
        record({ ...base, outcome: "failed", error: (failure as Error).message });
        console.error(pc.red(`taskmesh: ${request.action === "start" ? `starting a worker for ${request.module}` : `stopping ${request.name}`} failed: ${(failure as Error).message}`));
      }
    });
    return scaling;
  };
  const requests = setInterval(() => {
    if (phase === "ready") for (const request of takeAgentsRequests()) void agentsSerially(request);
    const request = phase === "ready" ? takeScaleRequest() : undefined;
    if (!request) return;
    if (autoscale?.service === request.service) {
      // The autoscaler would undo it at its next reading.
      scaled = { ...request, outcome: "failed", error: `${request.service} is autoscaled (${autoscale.min}..${autoscale.max}) in this run: change the bounds with up --autoscale` };
      save();
      return;
    }
    void scaleSerially(request);
  }, 500);
  requests.unref();
  if (autoscale) {
    const policy = autoscale;
    console.log(pc.dim(`taskmesh: autoscaling ${policy.service} between ${policy.min} and ${policy.max} replicas, ${policy.target} tasks in flight each`));
    const stopAutoscaler = startAutoscaler({
      policy, databaseUrl,
      current: () => runningReplicas(supervisor, policy.service).length,
      scaleTo: (n, why) => {
        console.log(pc.dim(`taskmesh: autoscale ${policy.service} → ${n} (${why})`));
        return scaleSerially({ id: `autoscale-${Date.now()}`, service: policy.service, replicas: n });
      },
      log: (line) => console.error(pc.yellow(line)),
    });
    process.once("exit", () => void stopAutoscaler());
  }
  console.log("Ctrl-C (or npx taskmesh down) stops everything.");
  await new Promise(() => undefined); // serve until a signal
  return 0;
}

/** How long the Envoys get to take an endpoints file before the replicas it left out stop, in ms. */
const ENDPOINTS_SETTLE_MS = 1000;

/**
 * Changes the number of running replicas of `request.service`: new ones
 * (each its sidecar, then the service) are started and waited for, then
 * listed in the service's endpoints file, which every caller's Envoy follows;
 * the highest-numbered ones are left out of it first, then stopped, each
 * service before its sidecar (a worker drains first: it finishes or hands
 * back what it holds; a coordinator sends its workers away to reconnect).
 */
async function scale(supervisor: Supervisor, replicas: Replicas, request: ScaleRequest): Promise<void> {
  const why = replicas.whyFixed(request.service);
  if (why) throw new Error(why);
  const running = runningReplicas(supervisor, request.service);
  if (request.replicas > running.length) {
    const next = (running.at(-1) ?? -1) + 1;
    const specs = (await Promise.all(Array.from({ length: request.replicas - running.length }, (_, k) => replicas.add(request.service, next + k)))).flat();
    const names = specs.filter((s) => s.kind === "service").map((s) => s.name);
    console.log(pc.dim(`taskmesh: adding ${names.join(", ")}`));
    await supervisor.start(specs);
    // Ready: the callers' Envoys learn of them (their service's endpoints file), and health-check them before any call.
    replicas.joined(names);
  } else if (request.replicas < running.length) {
    const gone = running.slice(request.replicas).reverse().map((i) => `${request.service}-${i}`);
    console.log(pc.dim(`taskmesh: removing ${gone.join(", ")}`));
    // No new calls reach them once the Envoys have read the endpoints file; then they stop, each before its sidecar.
    replicas.leaving(gone);
    await sleep(ENDPOINTS_SETTLE_MS);
    await supervisor.remove(gone.flatMap((name) => [name, `${name}-sidecar`]));
  }
  console.log(pc.green(`taskmesh: ${request.service} has ${request.replicas} replica${request.replicas === 1 ? "" : "s"}`));
}

/** A worker's name for an agent module: `agent-<file name>`, numbered when that is taken. */
export function agentWorkerName(module: string, taken: ReadonlySet<string>): string {
  const stem = basename(module).replace(/\.[^.]*$/, "").toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 40) || "module";
  for (let k = 1; ; k++) {
    const name = k === 1 ? `agent-${stem}` : `agent-${stem}-${k}`;
    if (!taken.has(name)) return name;
  }
}

/**
 * Starts a worker (with its sidecar, as any replica) that runs the agents of
 * `module` instead of the built-ins, and waits until it has registered with
 * a coordinator; answers its name. When it cannot start (the module does not
 * load, or exports no agents), nothing of it is left running and the error
 * carries the worker's own words.
 */
async function startAgents(supervisor: Supervisor, replicas: Replicas, module: string): Promise<string> {
  const name = agentWorkerName(module, new Set(supervisor.status().map((p) => p.name)));
  const specs = await replicas.add("worker", 0, module.endsWith(".py") ? await pythonWorker(module, name) : { name, env: { TASKMESH_WORKER_AGENTS: module } });
  console.log(pc.dim(`taskmesh: adding ${name} for ${module}`));
  try {
    await supervisor.start(specs);
  } catch (failure) {
    const supervised = new Set(supervisor.status().map((p) => p.name));
    await supervisor.remove(specs.map((s) => s.name).reverse().filter((n) => supervised.has(n))).catch(() => undefined);
    throw failure;
  }
  console.log(pc.green(`taskmesh: ${name} runs ${module}`));
  return name;
}

/**
 * A worker written in Python: the module runs on the pinned grpcio's
 * virtualenv with the worker protocol's stubs on its path (installed and
 * generated once, packages/local/src/provision/python-worker.ts), reaching a
 * coordinator through its sidecar (TASKMESH_UPSTREAM) and answering gRPC
 * health on TASKMESH_LISTEN like any worker.
 */
async function pythonWorker(module: string, name: string): Promise<Parameters<Replicas["add"]>[2]> {
  const { python, stubs } = await ensurePythonWorker((line) => console.log(pc.dim(`taskmesh: ${line}`)));
  return { name, env: { PYTHONPATH: stubs, PYTHONUNBUFFERED: "1" }, run: { command: python, args: [module] } };
}

/** The instance numbers of `service`'s replicas under `supervisor`, ascending. */
function runningReplicas(supervisor: Supervisor, service: string): number[] {
  return supervisor.status()
    .filter((p) => p.kind === "service" && p.service === service && /^\d+$/.test(p.name.slice(service.length + 1)))
    .map((p) => Number(p.name.slice(service.length + 1))).sort((a, b) => a - b);
}

/** The OTLP gRPC port of Jaeger among `specs`. */
function otlpGrpcPort(specs: readonly ProcessSpec[]): number {
  const port = specs.find((s) => s.name === "jaeger")?.ports["otlp-grpc"];
  if (port === undefined) throw new Error("the plan has no Jaeger to start later");
  return port;
}

/**
 * Builds Jaeger in the background while a {@link SpanBuffer} holds its OTLP
 * port: `built` resolves once Jaeger is built and the buffer has let go of
 * the port (its spans wait in `buffer`, to be delivered once Jaeger runs).
 * Without the port (something else holds it) spans are dropped meanwhile.
 */
async function holdSpans(port: number): Promise<{ built: Promise<void>; buffer: SpanBuffer | undefined }> {
  let buffer: SpanBuffer | undefined = new SpanBuffer();
  try {
    await buffer.listen(`127.0.0.1:${port}`);
  } catch (error) {
    console.error(pc.yellow(`taskmesh: cannot hold Jaeger's OTLP port ${port} while it builds (${(error as Error).message}): spans are dropped until it runs`));
    buffer = undefined;
  }
  const built = ensureJaeger().then(() => undefined).finally(() => buffer?.close());
  built.catch(() => undefined);
  return { built, buffer };
}

/** `taskmesh down`: stops the run (its supervisor stops everything in order), or cleans up after a killed one. */
export async function down(): Promise<number> {
  const state = readState();
  if (!state) {
    console.log("taskmesh: not running");
    return 0;
  }
  if (!alive(state.supervisorPid)) {
    const stopped = await recoverStaleRun();
    console.log(`taskmesh: the supervisor was gone; stopped what it left (${stopped.join(", ") || "nothing"})`);
    return 0;
  }
  process.kill(state.supervisorPid, "SIGTERM");
  const until = Date.now() + 90_000;
  while (alive(state.supervisorPid)) {
    if (Date.now() > until) {
      console.error(`taskmesh: supervisor ${state.supervisorPid} still running after 90 s`);
      return 1;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  console.log("taskmesh: stopped");
  return 0;
}
