import { randomUUID } from "node:crypto";
import { existsSync, statSync, watch } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { askSupervisor, LOG_DIR, readState, requestAgents, type AgentsOutcome, type AgentsRequest } from "@taskmesh/local/state";
import { alive } from "@taskmesh/local/supervisor";
import { LogReader } from "./inspect.js";
import { stdio, type Io } from "./io.js";
import { UsageError } from "@taskmesh/local/usage-error";

/** Options of `taskmesh worker`. */
export interface WorkerOptions {
  /** Return once the worker is connected, leaving it running. */
  readonly detach?: boolean;
  /** The argument names a worker to stop instead of a module to run. */
  readonly stop?: boolean;
  /** In the foreground, start the worker again whenever the module's file changes. */
  readonly watch?: boolean;
}

/** How long a file must stay unchanged before `--watch` restarts its worker (an editor's save can take several writes). */
const SETTLE_MS = 300;

/** Exit code when Ctrl-C stopped a foreground worker (128 + SIGINT). */
const INTERRUPTED = 130;

/** Hands `request` to the running supervisor and waits for its outcome. */
function submitted(request: AgentsRequest, timeoutMs: number): Promise<AgentsOutcome> {
  const what = request.action === "start" ? `starting a worker for ${request.module}` : `stopping ${request.name}`;
  return askSupervisor(what, () => requestAgents(request), (state) => state.agents?.find((o) => o.id === request.id), timeoutMs);
}

/**
 * `taskmesh worker <module>`: runs the agents a module exports (its default
 * export: an agent made with `defineAgent` from `@taskmesh/worker`, or a
 * list of them) on a worker of the running system: the supervisor starts
 * it with its own sidecar, as any worker, and it registers those
 * capabilities (submittable at once). In the foreground its log follows
 * until Ctrl-C, which drains and stops it; with `--watch` it is started
 * again each time the module's file changes (a module that no longer loads
 * is reported, and the next change tried). `--detach` leaves it running
 * (`taskmesh worker --stop <name>` stops it). `--stop <name>` stops one.
 */
export async function worker(target: string, opts: WorkerOptions = {}, io: Io = stdio, timeoutMs = 180_000): Promise<number> {
  if (opts.stop) {
    const { name } = await submitted({ id: randomUUID(), action: "stop", name: target }, timeoutMs);
    io.out(`taskmesh: ${name} stopped`);
    return 0;
  }
  // Relative to the folder the user ran taskmesh in (scripts/taskmesh.mjs runs this in the project's).
  const module = resolve(process.env.TASKMESH_CALLER_CWD ?? process.cwd(), target);
  if (!existsSync(module) || !statSync(module).isFile()) throw new UsageError(`no agent module at ${module}`);
  if (opts.watch && opts.detach) throw new UsageError("--watch restarts a worker it follows: not with --detach");
  let { name } = await submitted({ id: randomUUID(), action: "start", module }, timeoutMs);
  io.out(`taskmesh: ${name} runs the agents of ${module}`);
  if (opts.detach) {
    io.out(`taskmesh: stop it with npx taskmesh worker --stop ${name!}`);
    return 0;
  }
  io.out(`taskmesh: its log follows; ${opts.watch ? "it starts again when the file changes; " : ""}Ctrl-C stops it`);
  let reader = new LogReader(join(LOG_DIR, `${name!}.log`));
  for (const line of reader.tail(20)) io.out(line);
  let changedAt: number | undefined;
  const watcher = opts.watch
    ? watch(dirname(module), (_event, file) => void (file === basename(module) && (changedAt = Date.now())))
    : undefined;
  // The first Ctrl-C stops the worker; later ones (a terminal signals both this process and its launcher, which passes
  // its own on) wait for that.
  let interrupted = false;
  const onSignal = (): void => void (interrupted = true);
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  try {
    while (!interrupted) {
      await sleep(250);
      for (const line of reader.read()) io.out(line);
      const state = readState();
      if (!state || !alive(state.supervisorPid)) {
        io.err("taskmesh: the run stopped");
        return 1;
      }
      if (changedAt !== undefined && Date.now() - changedAt >= SETTLE_MS) {
        changedAt = undefined;
        io.err(`taskmesh: ${module} changed: starting its worker again…`);
        if (name !== undefined) await submitted({ id: randomUUID(), action: "stop", name }, timeoutMs);
        for (const line of reader.read(true)) io.out(line);
        name = undefined;
        try {
          name = (await submitted({ id: randomUUID(), action: "start", module }, timeoutMs)).name;
          if (reader.file !== join(LOG_DIR, `${name!}.log`)) {
            reader = new LogReader(join(LOG_DIR, `${name!}.log`));
            reader.skipToEnd(); // only what the new worker writes
          }
          io.err(`taskmesh: ${name!} runs the agents of ${module} again`);
        } catch (error) {
          io.err(`taskmesh: ${(error as Error).message}; waiting for the next change`);
        }
      }
    }
  } finally {
    watcher?.close();
  }
  if (name !== undefined) {
    io.err(`taskmesh: stopping ${name} (it finishes or hands back what it runs)…`);
    await submitted({ id: randomUUID(), action: "stop", name }, timeoutMs);
    for (const line of reader.read(true)) io.out(line);
    io.err(`taskmesh: ${name} stopped`);
  }
  return INTERRUPTED;
}
