import { closeSync, mkdirSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { spawn, type ChildProcess } from "node:child_process";
import type { ProcessKind, ProcessSpec } from "./process-spec.js";

/**
 * A supervised process's life: `pending` → `starting` → `running`; a crash
 * goes `restarting` → `starting`; `stopping` → `stopped` at the end; `failed`
 * when it could not be started or became ready. `building`: not handed to
 * the supervisor yet, its program is still being built (`up` starts Jaeger
 * this way on a first run).
 */
export type ProcessState = "building" | "pending" | "starting" | "running" | "restarting" | "stopping" | "stopped" | "failed";

/** What `taskmesh status` shows of one process. */
export interface ProcessStatus {
  readonly name: string;
  readonly kind: ProcessKind;
  readonly service?: string;
  readonly pid?: number;
  readonly state: ProcessState;
  readonly ports: Readonly<Record<string, number>>;
  readonly restarts: number;
  readonly logFile: string;
  /** See {@link startTicks}: identifies the process beyond its pid. */
  readonly startTicks?: number;
  /** The signal that asks it to stop (`taskmesh restart` sends it; the supervisor then starts it again). */
  readonly stopSignal?: NodeJS.Signals;
}

/** What the supervisor reports as it goes (for progress displays and logs). */
export type SupervisorEvent =
  | { readonly type: "starting"; readonly name: string }
  | { readonly type: "ready"; readonly name: string; readonly ms: number }
  | { readonly type: "exited"; readonly name: string; readonly code: number | undefined; readonly signal: string | undefined; readonly restartInMs?: number }
  | { readonly type: "restarted"; readonly name: string; readonly restarts: number }
  | { readonly type: "stopped"; readonly name: string }
  | { readonly type: "changed" };

/** Options of a {@link Supervisor}. */
export interface SupervisorOptions {
  /** Where each process's output goes, as `<name>.log`. */
  readonly logDir: string;
  /** Environment added for every process. */
  readonly env?: Readonly<Record<string, string>>;
  /** Called on every event. */
  readonly onEvent?: (event: SupervisorEvent) => void;
  /** Restart a process that exits on its own, with backoff. @default true */
  readonly restart?: boolean;
  /** Longest wait before a restart, in ms. @default 10000 */
  readonly maxRestartBackoffMs?: number;
}

/** A process that could not start or get ready; the message ends with the tail of its log. */
export class ProcessStartError extends Error {
  override readonly name = "ProcessStartError";
}

interface Entry {
  readonly spec: ProcessSpec;
  readonly logFile: string;
  state: ProcessState;
  child: ChildProcess | undefined;
  exit: Promise<void> | undefined;
  restarts: number;
  startedAt: number;
  restartTimer: NodeJS.Timeout | undefined;
  startTicks: number | undefined;
  /** Being taken out of the run ({@link Supervisor.remove}): never restarted. */
  removed?: boolean;
}

/** The last lines of a log file, for error messages. */
export function logTail(file: string, lines = 15): string {
  try {
    return readFileSync(file, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "(no log)";
  }
}

/** Sends `signal` to a process group; false when it is gone. */
function signalGroup(pid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(-pid, signal);
    return true;
  } catch {
    return false;
  }
}

/**
 * When a process started, in clock ticks since boot (field 22 of
 * /proc/<pid>/stat): with the pid, it names one process for good, even after
 * the pid is reused or the process rewrites its title. Undefined without /proc.
 */
export function startTicks(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return Number(fields[19]);
  } catch {
    return undefined;
  }
}

/** True while a process runs (a zombie, dead but not yet reaped, does not count). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
  try {
    // Field 3 of /proc/<pid>/stat, after the parenthesised name: the state letter.
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return true; // no /proc: trust kill(0)
  }
}

/** Waits `ms`; rejects with the signal's reason when it aborts first (and leaves no timer or listener behind). */
function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * Runs processes in dependency order, each in a process group of its own
 * with its output in `<logDir>/<name>.log`, checks each is ready for real
 * before starting what depends on it, restarts a crashed one with backoff,
 * and stops them all in reverse order, leaving no orphan.
 */
export class Supervisor {
  private readonly entries = new Map<string, Entry>();
  /** Launch order (each process after what it depends on): stop goes backwards through it. */
  private readonly order: string[] = [];
  /** Every process in dependency order, the same on every run: how {@link status} lists them. */
  private readonly listing: string[] = [];
  private stopping = false;

  constructor(private readonly options: SupervisorOptions) {
    mkdirSync(options.logDir, { recursive: true });
  }

  /** Every process's status, in dependency order (a level at a time, each level in the order given to {@link start}). */
  status(): ProcessStatus[] {
    return this.listing.map((name) => {
      const e = this.entries.get(name)!;
      const pid = e.child?.pid;
      return {
        name, kind: e.spec.kind, ...(e.spec.service ? { service: e.spec.service } : {}), ...(pid !== undefined && e.state !== "stopped" ? { pid } : {}),
        state: e.state, ports: e.spec.ports, restarts: e.restarts, logFile: e.logFile,
        ...(pid !== undefined && e.startTicks !== undefined ? { startTicks: e.startTicks } : {}),
        stopSignal: e.spec.stopSignal ?? "SIGTERM",
      };
    });
  }

  /**
   * Starts `specs`, each as soon as everything it depends on is ready, and
   * resolves once every one is ready; rejects with a {@link ProcessStartError}
   * (the others keep running: call {@link stop}) when one exits or is not
   * ready in time, and starts nothing more after that.
   */
  async start(specs: readonly ProcessSpec[], signal?: AbortSignal): Promise<void> {
    // A dependency already supervised (a replica added to a running system) is met: it runs, or the supervisor restarts it.
    const levels = dependencyLevels(specs.map((s) => ({ ...s, dependsOn: (s.dependsOn ?? []).filter((d) => !this.entries.has(d)) })));
    for (const spec of specs) {
      if (this.entries.has(spec.name)) throw new Error(`process ${spec.name} is already supervised`);
      this.entries.set(spec.name, { spec, logFile: join(this.options.logDir, `${spec.name}.log`), state: "pending", child: undefined, exit: undefined, restarts: 0, startedAt: 0, restartTimer: undefined, startTicks: undefined });
    }
    this.listing.push(...levels.flat());
    const byName = new Map(specs.map((s) => [s.name, s]));
    const ready = new Map<string, Promise<void>>();
    let failed = false;
    const launched = (name: string): Promise<void> => {
      let promise = ready.get(name);
      if (!promise) {
        promise = (async () => {
          await Promise.all((byName.get(name)!.dependsOn ?? []).filter((d) => byName.has(d)).map(launched));
          if (failed || this.stopping) throw new Error(`${name} not started: start-up was abandoned`);
          this.order.push(name);
          await this.launch(this.entries.get(name)!, signal);
        })();
        promise.catch(() => (failed = true));
        ready.set(name, promise);
      }
      return promise;
    };
    await Promise.all(specs.map((s) => launched(s.name)));
  }

  /**
   * Stops `names`, one after another in the order given (its stop signal,
   * then SIGKILL to its group after its grace), and forgets them: they are
   * not restarted and no longer listed.
   */
  async remove(names: readonly string[]): Promise<void> {
    for (const name of names) {
      const e = this.entries.get(name);
      if (!e) throw new Error(`no process ${name} is supervised`);
      clearTimeout(e.restartTimer);
      e.restartTimer = undefined;
      e.removed = true;
      await this.terminate(e);
      this.entries.delete(name);
      for (const list of [this.order, this.listing]) {
        const at = list.indexOf(name);
        if (at >= 0) list.splice(at, 1);
      }
      this.emit({ type: "stopped", name });
    }
  }

  /** Stops every process in reverse start order: its stop signal, then SIGKILL to its group after its grace. */
  async stop(): Promise<void> {
    this.stopping = true;
    for (const name of [...this.order].reverse()) {
      const e = this.entries.get(name)!;
      clearTimeout(e.restartTimer);
      await this.terminate(e);
      if (e.state !== "failed") e.state = "stopped";
      this.emit({ type: "stopped", name });
    }
  }

  private emit(event: SupervisorEvent): void {
    this.options.onEvent?.(event);
    if (event.type !== "changed") this.options.onEvent?.({ type: "changed" });
  }

  private async launch(e: Entry, signal?: AbortSignal): Promise<void> {
    const { spec } = e;
    e.state = "starting";
    this.emit({ type: "starting", name: spec.name });
    const started = Date.now();
    try {
      await spec.prepare?.(signal ?? new AbortController().signal);
      this.spawn(e);
      await this.waitReady(e, signal);
      await spec.afterReady?.(signal ?? new AbortController().signal);
    } catch (error) {
      e.state = "failed";
      await this.terminate(e);
      this.emit({ type: "changed" });
      // Already says what is wrong in one line (a missing prerequisite, a timeout with the log).
      if (error instanceof ProcessStartError || (error as Error)?.name === "MissingPrerequisite") throw error;
      throw new ProcessStartError(`${spec.name} failed to start: ${(error as Error).message}\n${logTail(e.logFile)}`, { cause: error });
    }
    e.state = "running";
    e.startedAt = Date.now();
    this.emit({ type: "ready", name: spec.name, ms: Date.now() - started });
  }

  private spawn(e: Entry): void {
    const { spec } = e;
    const fd = openSync(e.logFile, "a");
    try {
      // Its own process group (detached), so it and whatever it starts can be signalled together.
      e.child = spawn(spec.command, [...spec.args], {
        cwd: spec.cwd ?? process.cwd(),
        env: { ...process.env, ...this.options.env, ...spec.env },
        ...(spec.uid !== undefined ? { uid: spec.uid } : {}),
        ...(spec.gid !== undefined ? { gid: spec.gid } : {}),
        detached: true,
        stdio: ["ignore", fd, fd],
      });
    } finally {
      closeSync(fd);
    }
    const child = e.child;
    e.startTicks = child.pid === undefined ? undefined : startTicks(child.pid);
    // "exit" may not come after a failed spawn (ENOENT, EACCES): an "error" ends it then.
    e.exit = new Promise<void>((resolve) => {
      child.once("exit", (code, signal) => {
        resolve();
        this.exited(e, child, code ?? undefined, signal ?? undefined);
      });
      child.once("error", (error) => {
        if (child.pid !== undefined) return;
        writeFileSync(e.logFile, `taskmesh: cannot start ${spec.command}: ${error.message}\n`, { flag: "a" });
        resolve();
      });
    });
  }

  private async waitReady(e: Entry, signal?: AbortSignal): Promise<void> {
    const { spec } = e;
    const until = Date.now() + (spec.readyTimeoutMs ?? 60_000);
    const child = e.child!;
    for (;;) {
      signal?.throwIfAborted();
      if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) {
        throw new ProcessStartError(`${spec.name} exited (${child.exitCode ?? child.signalCode}) before it was ready:\n${logTail(e.logFile)}`);
      }
      const probe = new AbortController();
      const timer = setTimeout(() => probe.abort(new Error("probe timed out")), 5000);
      const ok = await spec.ready(probe.signal).catch(() => false).finally(() => clearTimeout(timer));
      if (ok) return;
      if (Date.now() > until) throw new ProcessStartError(`${spec.name} not ready after ${spec.readyTimeoutMs ?? 60_000} ms:\n${logTail(e.logFile)}`);
      await sleep(150, signal);
    }
  }

  private exited(e: Entry, child: ChildProcess, code: number | undefined, signal: string | undefined): void {
    if (e.child !== child || this.stopping || e.removed || e.state !== "running") return;
    const restart = this.options.restart ?? true;
    // Back off 0.5 s, 1 s, 2 s … up to the cap; a process that ran a minute starts over.
    if (Date.now() - e.startedAt > 60_000) e.restarts = 0;
    const restartInMs = Math.min(this.options.maxRestartBackoffMs ?? 10_000, 500 * 2 ** e.restarts);
    e.state = restart ? "restarting" : "failed";
    this.emit({ type: "exited", name: e.spec.name, code, signal, ...(restart ? { restartInMs } : {}) });
    if (!restart) return;
    e.restartTimer = setTimeout(() => {
      e.restartTimer = undefined;
      if (this.stopping || e.removed) return;
      e.restarts++;
      this.launch(e).then(
        () => this.emit({ type: "restarted", name: e.spec.name, restarts: e.restarts }),
        () => this.exited(e, e.child!, undefined, undefined),
      );
    }, restartInMs);
  }

  private async terminate(e: Entry): Promise<void> {
    const child = e.child;
    if (!child?.pid || child.exitCode !== null || child.signalCode !== null) {
      if (child?.pid) signalGroup(child.pid, "SIGKILL"); // leftovers of a group whose leader is gone
      return;
    }
    e.state = "stopping";
    this.emit({ type: "changed" });
    const pid = child.pid;
    signalGroup(pid, e.spec.stopSignal ?? "SIGTERM");
    const grace = e.spec.stopGraceMs ?? 15_000;
    const exit = e.exit ?? Promise.resolve();
    const graceOver = new AbortController();
    const done = await Promise.race([exit.then(() => true), sleep(grace, graceOver.signal).then(() => false, () => true)]);
    graceOver.abort();
    if (!done) signalGroup(pid, "SIGKILL");
    await exit;
    signalGroup(pid, "SIGKILL"); // any child it left behind in its group
  }
}

/** Groups specs into levels: each level depends only on earlier ones. Throws on unknown names and cycles. */
export function dependencyLevels(specs: readonly ProcessSpec[]): string[][] {
  const names = new Set(specs.map((s) => s.name));
  const remaining = new Map(specs.map((s) => [s.name, new Set(s.dependsOn ?? [])]));
  for (const [name, deps] of remaining) {
    for (const dep of deps) if (!names.has(dep)) throw new Error(`${name} depends on ${dep}, which is not in the plan`);
  }
  const levels: string[][] = [];
  const done = new Set<string>();
  while (remaining.size > 0) {
    const level = [...remaining].filter(([, deps]) => [...deps].every((d) => done.has(d))).map(([name]) => name);
    if (level.length === 0) throw new Error(`dependency cycle among ${[...remaining.keys()].join(", ")}`);
    for (const name of level) {
      remaining.delete(name);
      done.add(name);
    }
    levels.push(level);
  }
  return levels;
}

/** A single process run with {@link runProcess}. */
export interface RunningProcess {
  readonly supervisor: Supervisor;
  /** Its pid, while it runs. */
  pid(): number | undefined;
  stop(): Promise<void>;
}

/** Starts one process and waits until it is ready (for tests): no restarts. */
export async function runProcess(spec: ProcessSpec, options: { logDir: string; env?: Record<string, string> }): Promise<RunningProcess> {
  const supervisor = new Supervisor({ logDir: options.logDir, restart: false, ...(options.env ? { env: options.env } : {}) });
  try {
    await supervisor.start([spec]);
  } catch (error) {
    await supervisor.stop();
    throw error;
  }
  return { supervisor, pid: () => supervisor.status()[0]?.pid, stop: () => supervisor.stop() };
}
