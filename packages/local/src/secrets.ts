import { randomBytes } from "node:crypto";
import { existsSync, linkSync, mkdirSync, readFileSync, unlinkSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

/**
 * A secret kept in a file (mode 0600): generated on first use, so none is
 * ever committed, and the same on every later start (e.g. the password a
 * Postgres cluster was initialised with).
 */
export function localSecret(file: string, bytes = 18, encoding: "base64url" | "base64" = "base64url"): string {
  if (existsSync(file)) return readFileSync(file, "utf8").trim();
  const secret = randomBytes(bytes).toString(encoding);
  writeFileSync(file, `${secret}\n`, { mode: 0o600 });
  return secret;
}

/**
 * Ports handed out for listeners: below Linux's default ephemeral range
 * (32768–60999), so no outgoing connection's local port takes one between
 * its choice and its bind. The range is split in two: a `taskmesh up` run
 * takes its ports from the upper half ({@link useRunPorts}), tests and tools
 * from the lower, so a test process picking ports at the same moment as a
 * run's plan can never pick the same one.
 */
const TOOL_PORTS = { min: 20_000, max: 26_383 } as const;
const RUN_PORTS = { min: 26_384, max: 32_767 } as const;
let range: { readonly min: number; readonly max: number } = TOOL_PORTS;
const handedOut = new Set<number>();

/** This process plans a run (`taskmesh up`): its ports come from the upper half of the range. */
export function useRunPorts(): void {
  range = RUN_PORTS;
}

function bindableOn(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(false));
    server.listen(port, host, () => server.close(() => resolve(true)));
  });
}

/** Free on every address: sidecars' inbound listeners bind 0.0.0.0. */
async function bindable(port: number): Promise<boolean> {
  return (await bindableOn(port, "0.0.0.0")) && bindableOn(port, "127.0.0.1");
}

/**
 * Ports handed out are also claimed machine-wide, one file per port holding
 * the claiming process's id, so two processes picking at the same moment
 * (test files run in parallel) never both get one: a bind check alone passes
 * for both until either listens. A claim lasts while its process lives.
 */
const CLAIMS = join(tmpdir(), "taskmesh-ports");
let claiming = false;

function alive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Claims `port` for this process; false when a live process holds it. */
function claim(port: number): boolean {
  const file = join(CLAIMS, String(port));
  // Written aside then linked into place: the claim appears with its owner
  // already in it, so no reader ever sees an empty one and takes it for dead.
  const draft = join(CLAIMS, `.${process.pid}.${port}`);
  writeFileSync(draft, String(process.pid));
  try {
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        linkSync(draft, file);
        return true;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      }
      let owner: number;
      try {
        owner = Number(readFileSync(file, "utf8"));
      } catch {
        continue; // released between our link and our read: try again
      }
      if (alive(owner)) return false;
      try {
        unlinkSync(file); // its process is gone
      } catch {
        // another process cleared it first
      }
    }
    return false;
  } finally {
    unlinkSync(draft);
  }
}

function releaseClaims(): void {
  for (const port of handedOut) {
    try {
      unlinkSync(join(CLAIMS, String(port)));
    } catch {
      // already gone
    }
  }
}

/**
 * A port free now, for a listener started soon after: picked at random
 * below the ephemeral range (where the kernel also picks the local ports
 * of outgoing connections, which made a chosen port taken by the time its
 * server bound it), in this process's half of it, claimed machine-wide
 * until this process exits.
 */
export async function freePort(): Promise<number> {
  if (!claiming) {
    mkdirSync(CLAIMS, { recursive: true, mode: 0o1777 });
    process.once("exit", releaseClaims);
    claiming = true;
  }
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = range.min + Math.floor(Math.random() * (range.max - range.min + 1));
    if (handedOut.has(port) || !(await bindable(port)) || !claim(port)) continue;
    handedOut.add(port);
    return port;
  }
  throw new Error(`no free port found in ${range.min}..${range.max}`);
}
