import { closeSync, openSync, readFileSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** Whether a process with this pid is alive. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Holds a machine-wide lock named `name` until the returned release is
 * called: for test files that each run the whole system (`taskmesh up`),
 * which two at once on two cores would starve each other's start-up. A lock
 * whose holder died is taken over.
 */
export async function exclusive(name: string, timeoutMs = 300_000): Promise<() => void> {
  const path = join(tmpdir(), `taskmesh-test-${name}.lock`);
  const until = Date.now() + timeoutMs;
  for (;;) {
    try {
      const fd = openSync(path, "wx", 0o600);
      writeSync(fd, String(process.pid));
      closeSync(fd);
      return () => rmSync(path, { force: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      const holder = Number(readFileSync(path, "utf8").trim() || "0");
      if (holder > 0 && !alive(holder)) rmSync(path, { force: true });
      else if (Date.now() > until) throw new Error(`lock ${path} still held by ${holder} after ${timeoutMs} ms`);
      else await new Promise((r) => setTimeout(r, 250));
    }
  }
}

/** The end of the supervisor's log in `stateDir`, to show why an `up` failed. */
export function supervisorLogTail(stateDir: string, lines = 40): string {
  try {
    return "\n--- supervisor log ---\n" + readFileSync(join(stateDir, "logs", "taskmesh.log"), "utf8").trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "";
  }
}
