import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { alive, startTicks, type ProcessStatus } from "./supervisor.js";
import { ROOT } from "./provision/versions.js";

/** `.taskmesh/` of this clone (or TASKMESH_STATE_DIR): run state, logs, data (git-ignored). */
export const STATE_DIR = process.env.TASKMESH_STATE_DIR?.trim() || join(ROOT, ".taskmesh");
/** Where each process writes `<name>.log`. */
export const LOG_DIR = join(STATE_DIR, "logs");
const STATE_FILE = join(STATE_DIR, "state.json");

/** One process of the run as the state file keeps it (its start ticks prove a pid is still it). */
export interface ProcessRecord extends Omit<ProcessStatus, "logFile" | "restarts"> {
  readonly restarts?: number;
}

/** The run's state file: who supervises it, whether it is up, and every process. */
export interface RunState {
  readonly supervisorPid: number;
  readonly startedAt: string;
  /** `starting` until every process is ready; `failed` when start-up failed. */
  readonly phase: "starting" | "ready" | "stopping" | "failed";
  readonly error?: string;
  readonly processes: readonly ProcessRecord[];
  /** The last `taskmesh scale` request the supervisor took, and how it went. */
  readonly scale?: ScaleOutcome;
  /** Workers running agent modules of their own (`taskmesh worker <module>`), by request. */
  readonly agents?: readonly AgentsOutcome[];
}

/** A request to start (or stop) a worker running an agent module while the run goes on (`taskmesh worker`). */
export type AgentsRequest =
  | { readonly id: string; readonly action: "start"; readonly module: string }
  | { readonly id: string; readonly action: "stop"; readonly name: string };

/** What became of an {@link AgentsRequest}: the worker's name once it has one. */
export interface AgentsOutcome {
  readonly id: string;
  readonly action: AgentsRequest["action"];
  readonly name?: string;
  readonly module?: string;
  readonly outcome: "working" | "done" | "failed";
  readonly error?: string;
}

const AGENTS_REQUEST = /^agents-request-[0-9a-f-]+\.json$/;

/** Writes `file` under the state folder in one rename: a reader (the supervisor, a command) never sees half of it. */
function writeWhole(file: string, text: string): void {
  mkdirSync(STATE_DIR, { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, text);
  renameSync(tmp, file);
}

/**
 * Hands a request to the running supervisor with `send` (once the run is
 * ready) and waits for what became of it in the state file (`outcomeOf`
 * finds it): answers it once done; throws its error when it failed, or when
 * the run stops or `timeoutMs` passes first. `what` says what was asked,
 * for those messages (e.g. "scaling worker to 3").
 */
export async function askSupervisor<O extends { readonly outcome: "working" | "done" | "failed"; readonly error?: string }>(
  what: string, send: () => void, outcomeOf: (state: RunState) => O | undefined, timeoutMs: number,
): Promise<O> {
  const state = readState();
  if (!state || !alive(state.supervisorPid)) throw new Error("nothing is running: start it with npx taskmesh up");
  if (state.phase !== "ready") throw new Error(`the run is ${state.phase}, not ready: try again once npx taskmesh status shows it ready`);
  send();
  const started = Date.now();
  for (;;) {
    const now = readState();
    if (!now || !alive(now.supervisorPid)) throw new Error(`the run stopped while ${what}`);
    const outcome = outcomeOf(now);
    if (outcome?.outcome === "failed") throw new Error(outcome.error ?? `${what} failed`);
    if (outcome?.outcome === "done") return outcome;
    if (Date.now() - started > timeoutMs) throw new Error(`${what}: not done within ${timeoutMs / 1000} s: see npx taskmesh status and logs`);
    await sleep(200);
  }
}

/** Hands an agents request to the running supervisor (it looks for them twice a second; several may wait). */
export function requestAgents(request: AgentsRequest): void {
  writeWhole(join(STATE_DIR, `agents-request-${request.id}.json`), JSON.stringify(request));
}

/** Takes every pending agents request, oldest first (their files are removed). */
export function takeAgentsRequests(): AgentsRequest[] {
  if (!existsSync(STATE_DIR)) return [];
  const files = readdirSync(STATE_DIR).filter((f) => AGENTS_REQUEST.test(f)).map((f) => join(STATE_DIR, f))
    .sort((a, b) => statSync(a).mtimeMs - statSync(b).mtimeMs);
  const taken: AgentsRequest[] = [];
  for (const file of files) {
    try {
      taken.push(JSON.parse(readFileSync(file, "utf8")) as AgentsRequest);
    } catch {
      // half-read or gone: the writer renames whole files into place, so skip it
    } finally {
      rmSync(file, { force: true });
    }
  }
  return taken;
}

/** A request to change a service's replica count while the run goes on (`taskmesh scale`). */
export interface ScaleRequest {
  /** Names the request, so its outcome can be told from an earlier one's. */
  readonly id: string;
  readonly service: string;
  readonly replicas: number;
}

/** What became of a {@link ScaleRequest}. */
export interface ScaleOutcome extends ScaleRequest {
  readonly outcome: "working" | "done" | "failed";
  readonly error?: string;
}

const SCALE_FILE = join(STATE_DIR, "scale-request.json");

/** Hands a scale request to the running supervisor (it looks for one twice a second). */
export function requestScale(request: ScaleRequest): void {
  writeWhole(SCALE_FILE, JSON.stringify(request));
}

/** Takes the pending scale request, if any (the file is removed). */
export function takeScaleRequest(): ScaleRequest | undefined {
  if (!existsSync(SCALE_FILE)) return undefined;
  try {
    return JSON.parse(readFileSync(SCALE_FILE, "utf8")) as ScaleRequest;
  } catch {
    return undefined;
  } finally {
    rmSync(SCALE_FILE, { force: true });
  }
}

/** Writes the state file atomically (readers never see half a file). */
export function writeState(state: RunState): void {
  writeWhole(STATE_FILE, `${JSON.stringify(state, null, 2)}\n`);
}

/** The state file, or undefined when no run left one. */
export function readState(): RunState | undefined {
  if (!existsSync(STATE_FILE)) return undefined;
  try {
    return JSON.parse(readFileSync(STATE_FILE, "utf8")) as RunState;
  } catch {
    return undefined;
  }
}

/** True when `pid` is still the process that started at `ticks` (pids are reused, after a reboot say). */
function same(pid: number, ticks: number | undefined): boolean {
  return ticks !== undefined && startTicks(pid) === ticks;
}

/** Removes the state file (after a clean stop). */
export function clearState(): void {
  rmSync(STATE_FILE, { force: true });
}

/** True while any process of the group `pgid` exists. */
function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Cleans up after a run whose supervisor was killed (`kill -9`, a crash, a
 * closed laptop): kills the process groups it left, waits until they are
 * gone (a new Postgres would refuse a data directory whose old server still
 * exits), and removes the state. Returns the names of the processes it
 * stopped. Throws when that run's supervisor is still alive.
 */
export async function recoverStaleRun(): Promise<string[]> {
  const state = readState();
  if (!state) return [];
  if (state.supervisorPid !== process.pid && alive(state.supervisorPid)) {
    throw new Error(`taskmesh is already running (supervisor pid ${state.supervisorPid}); stop it with: npx taskmesh down`);
  }
  const groups = state.processes.filter((p) => p.pid !== undefined && alive(p.pid) && same(p.pid, p.startTicks));
  for (const p of groups) {
    try {
      process.kill(-p.pid!, "SIGKILL");
    } catch {
      // gone meanwhile
    }
  }
  const until = Date.now() + 10_000;
  while (groups.some((p) => groupAlive(p.pid!)) && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
  clearState();
  return groups.map((p) => p.name);
}
