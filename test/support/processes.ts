import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { checkHealth } from "@taskmesh/local/health";
import { serviceArgs } from "@taskmesh/local/plan";

/** The repository root. */
export const ROOT = join(import.meta.dirname, "../..");

/** A service process started the way `npm start` starts it, with its output collected. */
export interface ServiceProcess {
  readonly child: ChildProcess;
  /** Everything it wrote to stdout and stderr so far. */
  output(): string;
  /** Resolves with the exit code (or the signal's name) when it exits. */
  readonly exited: Promise<number | string>;
}

/** Starts `services/<name>/src/main.ts` under the telemetry preload, with `env` on top of this process's. */
export function startService(name: string, env: Record<string, string>): ServiceProcess {
  const child = spawn(process.execPath, serviceArgs(name), {
    cwd: ROOT,
    env: { ...process.env, OTEL_TRACES_EXPORTER: "none", LOG_LEVEL: "warn", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let text = "";
  child.stdout?.on("data", (d: Buffer) => (text += d.toString()));
  child.stderr?.on("data", (d: Buffer) => (text += d.toString()));
  const exited = new Promise<number | string>((resolve) => child.once("exit", (code, signal) => resolve(code ?? signal ?? -1)));
  return { child, output: () => text, exited };
}

/** Polls `grpc.health.v1.Health/Check` for `service` until it answers SERVING, the process exits, or `timeoutMs` passes. */
export async function waitForServing(address: string, proc: ServiceProcess, timeoutMs = 20_000, service = ""): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (proc.child.exitCode !== null) throw new Error(`exited with ${proc.child.exitCode}:\n${proc.output()}`);
    const status = await checkHealth(address, service);
    if (status === "SERVING") return;
    if (Date.now() > until) throw new Error(`not SERVING after ${timeoutMs} ms (last: ${status}):\n${proc.output()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
