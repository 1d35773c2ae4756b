import { spawn } from "node:child_process";
import { mkdirSync, openSync } from "node:fs";
import { join } from "node:path";
import { Listr } from "listr2";
import pc from "picocolors";
import { buildPlan } from "../plan.js";
import type { ProcessSpec } from "../process-spec.js";
import { ensureJaeger } from "../provision/jaeger.js";
import { ensureKafka } from "../provision/kafka.js";
import { ensureRedis } from "../provision/redis.js";
import { MissingPrerequisite, ROOT } from "../provision/versions.js";
import { localSecret } from "../secrets.js";
import { clearState, LOG_DIR, readState, recoverStaleRun, STATE_DIR, writeState, type RunState } from "../state.js";
import { alive, Supervisor, type SupervisorEvent } from "../supervisor.js";
import { printAddresses } from "./inspect.js";

/** Options of `taskmesh up`. */
export interface UpOptions {
  /** Start in the background and return once everything is ready. */
  readonly detach?: boolean;
  /** Replicas per service, e.g. `{ config: 2 }`. */
  readonly replicas?: Readonly<Record<string, number>>;
}

export { parseReplicas } from "./replicas.js";

/** `taskmesh up`: runs everything and supervises it until a signal (or, with -d, in the background). */
export async function up(options: UpOptions): Promise<number> {
  return options.detach ? upDetached(options) : upForeground(options);
}

async function upDetached(options: UpOptions): Promise<number> {
  const running = readState();
  if (running && alive(running.supervisorPid)) {
    console.error(`taskmesh is already running (supervisor pid ${running.supervisorPid}); stop it with: npx taskmesh down`);
    return 1;
  }
  mkdirSync(LOG_DIR, { recursive: true });
  const out = openSync(join(LOG_DIR, "taskmesh.log"), "a");
  const replicas = Object.entries(options.replicas ?? {}).map(([k, v]) => `${k}=${v}`).join(",");
  // The same command line as this one (the compiled CLI, or the TypeScript one under a loader).
  const child = spawn(process.execPath, [...process.execArgv, process.argv[1]!, "up", ...(replicas ? ["--replicas", replicas] : [])], {
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

async function upForeground(options: UpOptions): Promise<number> {
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
  try {
    const external = process.env.DATABASE_URL?.trim();
    const plan = await buildPlan({
      stateDir: STATE_DIR,
      postgresPassword: localSecret(join(STATE_DIR, "postgres.password")),
      ...(options.replicas ? { replicas: options.replicas } : {}),
      ...(external ? { databaseUrl: external } : {}),
    });
    specs = plan.specs;
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
  const save = (): void => writeState({
    supervisorPid: process.pid, startedAt: new Date(started).toISOString(), phase, ...(error ? { error } : {}),
    processes: supervisor.status().map(({ logFile: _log, ...s }) => s),
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

  // Provision first, visibly: the first run on a machine builds or fetches components for minutes.
  const provisioning = new Listr([
    { title: "Kafka (Maven Central)", task: () => ensureKafka() },
    { title: "Jaeger (Go module proxy; the first build takes minutes)", task: () => ensureJaeger() },
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
  phase = "ready";
  save();
  console.log(pc.green(`taskmesh: ready in ${((Date.now() - started) / 1000).toFixed(1)} s`));
  printAddresses(readState()!);
  console.log("Ctrl-C (or npx taskmesh down) stops everything.");
  await new Promise(() => undefined); // serve until a signal
  return 0;
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
