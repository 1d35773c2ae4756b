import { setTimeout as sleep } from "node:timers/promises";
import { readState, type ProcessRecord } from "@taskmesh/local/state";
import { alive } from "@taskmesh/local/supervisor";
import { stdio, type Io } from "./io.js";
import { UsageError } from "@taskmesh/local/usage-error";

/**
 * `taskmesh restart <process>`: asks one process of the running system to
 * stop (its stop signal, to its process group: a service drains as on
 * shutdown), lets the supervisor start it again as it restarts any process
 * that exits, and returns once the run's state shows it running (ready) under
 * a new pid.
 */
export async function restart(name: string, io: Io = stdio, timeoutMs = 120_000): Promise<number> {
  const state = readState();
  if (!state || !alive(state.supervisorPid)) throw new Error("nothing is running: start it with npx taskmesh up");
  const before = state.processes.find((p) => p.name === name);
  if (!before) throw new UsageError(`no process ${JSON.stringify(name)} in this run; it has ${state.processes.map((p) => p.name).join(", ")}`);
  if (before.pid === undefined || before.state !== "running") throw new Error(`${name} is ${before.state}, not running: the supervisor is already on it`);
  const started = Date.now();
  try {
    process.kill(-before.pid, before.stopSignal ?? "SIGTERM");
  } catch (error) {
    throw new Error(`could not signal ${name} (pid ${before.pid}): ${(error as Error).message}`);
  }
  io.err(`taskmesh: ${name} (pid ${before.pid}) asked to stop; waiting for the supervisor to start it again…`);
  for (;;) {
    const now = readState()?.processes.find((p) => p.name === name);
    if (isBack(before, now)) {
      io.out(`taskmesh: ${name} restarted (pid ${before.pid} → ${now!.pid}) in ${((Date.now() - started) / 1000).toFixed(1)} s`);
      return 0;
    }
    if (Date.now() - started > timeoutMs) throw new Error(`${name} is not running again after ${timeoutMs / 1000} s (state ${now?.state ?? "gone"}): see npx taskmesh logs ${name}`);
    await sleep(200);
  }
}

function isBack(before: ProcessRecord, now: ProcessRecord | undefined): boolean {
  return now?.state === "running" && now.pid !== undefined && (now.pid !== before.pid || now.startTicks !== before.startTicks);
}
