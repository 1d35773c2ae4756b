import { randomBytes } from "node:crypto";
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { Redis } from "ioredis";
import pg from "pg";
import { postgresSpec, postgresUrl } from "@taskmesh/local/provision/postgres";
import { ensureRedis, redisSpec, redisUrl } from "@taskmesh/local/provision/redis";
import { freePort } from "@taskmesh/local/secrets";
import { Supervisor } from "@taskmesh/local/supervisor";

/** The servers every runner gets: each runner makes its own database or key prefix on them. */
export interface Infra {
  /** URL of a Postgres server's `postgres` database; its role may create databases. */
  readonly postgresAdminUrl: string;
  /** URL of a Redis server. */
  readonly redisUrl: string;
}

/** Running infrastructure and how to take it down. */
export interface StartedInfra extends Infra {
  /** Stops every process and removes the temporary directory; safe to call twice. */
  readonly stop: () => Promise<void>;
}

/**
 * Starts Postgres and Redis the way the test suite does: the same specs and
 * supervisor as `taskmesh up`, on free ports in a new temporary directory
 * (or the Postgres at `externalPostgresUrl`, whose role must be allowed to
 * create databases).
 */
export async function startInfra(options: { externalPostgresUrl?: string } = {}): Promise<StartedInfra> {
  await ensureRedis();
  // Under the system temp dir, entered by all: as root, Postgres runs as user `postgres`.
  const dir = mkdtempSync(join(tmpdir(), "taskmesh-bench-"));
  chmodSync(dir, 0o755);
  const supervisor = new Supervisor({ logDir: join(dir, "logs"), restart: false });
  let stopped: Promise<void> | undefined;
  // However this process ends (a crash included), its Postgres and Redis do not outlive it.
  const killOnExit = (): void => killGroups(supervisor);
  process.once("exit", killOnExit);
  const stop = (): Promise<void> => (stopped ??= (async () => {
    process.removeListener("exit", killOnExit);
    await supervisor.stop();
    rmSync(dir, { recursive: true, force: true });
  })());
  try {
    const external = options.externalPostgresUrl;
    const pgOptions = { dataDir: join(dir, "postgres"), port: await freePort(), password: randomBytes(18).toString("base64url"), database: "postgres" };
    const redisPort = await freePort();
    await supervisor.start([
      ...(external ? [] : [await withStatementStats(await postgresSpec(pgOptions))]),
      redisSpec({ dataDir: join(dir, "redis"), port: redisPort }),
    ]);
    return { postgresAdminUrl: external ?? postgresUrl(pgOptions, "postgres"), redisUrl: redisUrl(redisPort), stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

/**
 * TASKMESH_BENCH_PG_STATS=1: Postgres loads pg_stat_statements, and the
 * taskmesh runner prints the statements its burst spent the most time in.
 * TASKMESH_BENCH_PG_EXPLAIN=<dir> as well: the plan of every statement
 * that ran 15 ms (TASKMESH_BENCH_PG_EXPLAIN_MIN_MS) or longer, with its row counts, times and buffers
 * (auto_explain), goes to Postgres's log in that folder.
 */
async function withStatementStats(spec: Awaited<ReturnType<typeof postgresSpec>>): Promise<typeof spec> {
  if (!process.env.TASKMESH_BENCH_PG_STATS) return spec;
  const explainDir = process.env.TASKMESH_BENCH_PG_EXPLAIN;
  const explain = explainDir
    ? ["-c", `auto_explain.log_min_duration=${Number(process.env.TASKMESH_BENCH_PG_EXPLAIN_MIN_MS ?? 15)}`, "-c", "auto_explain.log_analyze=on", "-c", "auto_explain.log_buffers=on",
       "-c", "logging_collector=on", "-c", `log_directory=${resolve(explainDir)}`]
    : [];
  const libraries = explainDir ? "pg_stat_statements,auto_explain" : "pg_stat_statements";
  return { ...spec, args: [...spec.args, "-c", `shared_preload_libraries=${libraries}`, "-c", "track_io_timing=on",
    "-c", "pg_stat_statements.track_planning=on", ...explain] };
}

/** A random suffix for names of databases, schemas and key prefixes. */
export function uniqueSuffix(): string {
  return randomBytes(4).toString("hex");
}

/** Creates a new database named `<prefix>_<random>` on the admin URL's server and returns its URL. */
export async function freshDatabase(postgresAdminUrl: string, prefix: string): Promise<string> {
  const name = `${prefix}_${uniqueSuffix()}`;
  const client = new pg.Client({ connectionString: postgresAdminUrl });
  await client.connect();
  try {
    await client.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`);
  } finally {
    await client.end();
  }
  const url = new URL(postgresAdminUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

/**
 * Asks Postgres to write out what the previous runner left in memory
 * (CHECKPOINT), so that runner's writes are not flushed during the next
 * one's measurement. Skipped quietly where the role may not (an external
 * Postgres).
 */
export async function checkpoint(infra: Infra): Promise<void> {
  const client = new pg.Client({ connectionString: infra.postgresAdminUrl });
  await client.connect();
  try {
    await client.query("CHECKPOINT").catch(() => undefined);
  } finally {
    await client.end();
  }
}

/** The server versions, for the report: `PostgreSQL 18.x, Redis 7.x`. */
export async function serverVersions(infra: Infra): Promise<string> {
  const client = new pg.Client({ connectionString: infra.postgresAdminUrl });
  await client.connect();
  let postgres: string;
  try {
    postgres = String((await client.query<{ server_version: string }>("SHOW server_version")).rows[0]?.server_version);
  } finally {
    await client.end();
  }
  const redis = new Redis(infra.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
  let redisVersion: string;
  try {
    await redis.connect();
    redisVersion = /redis_version:(\S+)/.exec(await redis.info("server"))?.[1] ?? "unknown";
  } finally {
    redis.disconnect();
  }
  return `PostgreSQL ${postgres.split(" ")[0]}, Redis ${redisVersion}`;
}

/** SIGKILL to the process group of everything `supervisor` runs (synchronous: for an exiting process). */
export function killGroups(supervisor: Supervisor): void {
  for (const p of supervisor.status()) {
    if (p.pid === undefined) continue;
    try {
      process.kill(-p.pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
}
