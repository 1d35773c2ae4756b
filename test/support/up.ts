/**
 * The whole system as `taskmesh up -d` runs it, for end-to-end tests: on a
 * state dir and ports of its own, one such run at a time on the machine
 * (see exclusive()).
 */
import { execFile } from "node:child_process";
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { Metadata } from "@grpc/grpc-js";
import { afterAll, beforeAll } from "vitest";
import { freePort } from "@taskmesh/local/secrets";
import { MeshError } from "@taskmesh/kit";
import { exclusive, supervisorLogTail } from "./exclusive.js";
import { ROOT } from "./processes.js";

const run = promisify(execFile);

/** How long `up -d` may take before the run counts as failed, in ms. */
const UP_TIMEOUT_MS = 180_000;

/** What a CLI run printed, and its exit code. */
export interface CliResult {
  readonly stdout: string;
  readonly stderr: string;
  readonly code: number;
}

/** A running `taskmesh up -d`. */
export interface UpRun {
  readonly stateDir: string;
  /** The environment the run's commands use (its state dir and ports). */
  readonly env: NodeJS.ProcessEnv;
  /** The edge's address, `127.0.0.1:<port>`. */
  readonly edge: string;
  /** What `up -d` printed once ready (the addresses). */
  readonly printed: string;
  /** Runs `npx taskmesh <args>` against this run. */
  taskmesh(...args: string[]): Promise<CliResult>;
  /** Runs `npx taskmesh up -d` again on this run's state and ports (after a `down`). */
  upAgain(): Promise<CliResult>;
  /** A development access token from `taskmesh token` (the bootstrap admin key's), with `scopes` when given. */
  token(...scopes: string[]): Promise<string>;
  /** Stops the run, removes its state and releases the machine. */
  down(): Promise<void>;
}

/** The error a call that must fail fails with, as a MeshError; fails the test when the call succeeds. */
export const failure = (p: Promise<unknown>): Promise<MeshError> => p.then(() => { throw new Error("expected the call to fail"); }, (e: unknown) => MeshError.from(e));

/** A call to the edge's HTTP API with `token`: a GET without a body, a POST of `body` as JSON with one. */
export function edgeApi(edge: string, token: string, path: string, body?: unknown): Promise<Response> {
  return fetch(`http://${edge}${path}`, {
    method: body === undefined ? "GET" : "POST",
    headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
}

/** Polls `probe` every 200 ms until it returns a value other than undefined, or fails naming `what` after `ms`. */
export async function until<T>(what: string, ms: number, probe: () => Promise<T | undefined>): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** `authorization: Bearer <token>` as gRPC metadata. */
export function bearer(token: string): Metadata {
  const metadata = new Metadata();
  metadata.set("authorization", `Bearer ${token}`);
  return metadata;
}

/**
 * A run of `taskmesh up -d` for a whole describe block: started before its
 * tests (waiting for the machine-wide lock included), stopped after them.
 * Answers the run, for use inside the tests.
 */
export function upForSuite(): () => UpRun {
  let upRun: UpRun | undefined;
  beforeAll(async () => {
    upRun = await startUp();
  }, 400_000);
  afterAll(async () => {
    await upRun?.down();
  }, 60_000);
  return () => upRun!;
}

/**
 * Starts `taskmesh up -d <args>` on fresh ports and state, waiting first for
 * the machine-wide "up" lock; `extraEnv` reaches every process of the run.
 * Throws (with the supervisor's log) when it does not come up.
 */
export async function startUp(args: readonly string[] = [], extraEnv: Record<string, string> = {}): Promise<UpRun> {
  const release = await exclusive("up");
  const stateDir = mkdtempSync(join(tmpdir(), "taskmesh-e2e-"));
  chmodSync(stateDir, 0o755); // Postgres (as user postgres when root) must reach its data directory below
  const { DATABASE_URL: _ignored, OTEL_TRACES_EXPORTER: _exporter, ...rest } = process.env;
  const env: NodeJS.ProcessEnv = { ...rest, ...extraEnv, TASKMESH_STATE_DIR: stateDir, NO_COLOR: "1" };
  for (const variable of ["POSTGRES", "REDIS", "KAFKA", "JAEGER", "OTLP_GRPC", "OTLP_HTTP", "JAEGER_GRPC", "EDGE", "EDGE_ADMIN"]) {
    env[`TASKMESH_${variable}_PORT`] = String(await freePort());
  }
  const command = async (timeout: number, cli: readonly string[]): Promise<CliResult> => {
    try {
      const { stdout, stderr } = await run(process.execPath, [join(ROOT, "scripts/taskmesh.mjs"), ...cli], { env, timeout });
      return { stdout, stderr, code: 0 };
    } catch (error) {
      const e = error as { stdout?: string; stderr?: string; code?: number };
      return { stdout: e.stdout ?? "", stderr: e.stderr ?? "", code: typeof e.code === "number" ? e.code : -1 };
    }
  };
  const taskmesh = (...cli: string[]): Promise<CliResult> => command(60_000, cli);
  const down = async (): Promise<void> => {
    try {
      await taskmesh("down");
      rmSync(stateDir, { recursive: true, force: true });
    } finally {
      release();
    }
  };
  // Twenty-odd processes start in dependency order; on a loaded 2-core machine (the rest of the suite
  // runs beside this) that takes well over the minute the other commands get.
  const up = await command(UP_TIMEOUT_MS, ["up", "-d", ...args]);
  if (up.code !== 0) {
    const log = supervisorLogTail(stateDir);
    await down();
    throw new Error(`taskmesh up failed (${up.code}):\n${up.stderr}${up.stdout}${log}`);
  }
  return {
    stateDir, env, edge: `127.0.0.1:${env.TASKMESH_EDGE_PORT}`, printed: up.stdout, taskmesh, down,
    upAgain: () => command(UP_TIMEOUT_MS, ["up", "-d"]),
    async token(...scopes) {
      const issued = await taskmesh("token", ...scopes.flatMap((s) => ["--scope", s]));
      if (issued.code !== 0) throw new Error(`taskmesh token failed: ${issued.stderr}`);
      return issued.stdout.trim();
    },
  };
}
