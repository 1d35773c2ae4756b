import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { execa } from "execa";
import pg from "pg";
import { fixedPorts } from "@taskmesh/local/ports";
import { aptInstall } from "@taskmesh/local/provision/apt";
import { postgresUrl, runAs } from "@taskmesh/local/provision/postgres";
import { localSecret } from "@taskmesh/local/secrets";
import { readState, STATE_DIR } from "@taskmesh/local/state";
import { alive } from "@taskmesh/local/supervisor";
import { runForeground } from "./foreground.js";
import { UsageError } from "@taskmesh/local/usage-error";

/** The run's data directory, password file and where backups go by default. */
const DATA_DIR = join(STATE_DIR, "postgres");
const PASSWORD_FILE = join(STATE_DIR, "postgres.password");
const BACKUP_DIR = join(STATE_DIR, "backups");
/** The password's name inside a backup (restored beside the data, so the restored roles and the services agree). */
const PASSWORD_IN_BACKUP = "taskmesh-postgres.password";

/**
 * What a physical backup leaves out (PostgreSQL's "Making a Base Backup
 * Using the Low Level API"): the server's pid and options files, its
 * temporary and runtime directories' contents; `pg_wal/` is taken after the
 * backup ends instead, so it holds every segment the backup needs.
 */
const EXCLUDED = [
  "./postmaster.pid", "./postmaster.opts", "./pg_wal/*", "./pg_replslot/*", "./pg_dynshmem/*", "./pg_notify/*", "./pg_serial/*",
  "./pg_snapshots/*", "./pg_stat_tmp/*", "./pg_subtrans/*", "./backup_label", "./tablespace_map",
];

/** The run's Postgres URL (the database `taskmesh`), when this run has its own Postgres and is running. */
function runningUrl(): string {
  const state = readState();
  if (!state || !alive(state.supervisorPid)) throw new Error("taskmesh is not running (start it with npm start, or npx taskmesh up -d)");
  const postgres = state.processes.find((p) => p.name === "postgres");
  if (!postgres) throw new Error("this run uses a Postgres of its own (DATABASE_URL): use that server's tools");
  return postgresUrl({ dataDir: DATA_DIR, password: localSecret(PASSWORD_FILE), port: postgres.ports.app ?? fixedPorts().postgres }, "taskmesh");
}

/** Debian's `psql` (package postgresql-client), installed as root when missing. */
async function psqlPath(): Promise<string> {
  const found = await execa("sh", ["-c", "command -v psql"], { reject: false });
  if (found.exitCode === 0 && found.stdout.trim()) return found.stdout.trim();
  if (process.getuid?.() !== 0) throw new Error("psql is missing: install Debian's postgresql-client (apt-get install postgresql-client)");
  await aptInstall("postgresql-client");
  return "psql";
}

/** `taskmesh db console [psql args…]`: psql on the run's database, its arguments passed as given; exits with psql's code. */
export async function dbConsole(args: readonly string[]): Promise<number> {
  const url = runningUrl();
  return runForeground(await psqlPath(), [url, ...args]);
}

/** A timestamp for file names: 20261205T031500Z. */
function stamp(date = new Date()): string {
  return date.toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z");
}

/**
 * `taskmesh db backup [file]`: a physical backup of the running system's
 * Postgres into one `.tar.gz` (default `.taskmesh/backups/taskmesh-<time>.tar.gz`),
 * taken while it serves: `pg_backup_start`, the data directory copied,
 * `pg_backup_stop`, its `backup_label` and the WAL written meanwhile added,
 * with the run's Postgres password. `db restore` brings it back; the server
 * replays that WAL when it next starts, to the moment the backup ended.
 */
export async function dbBackup(file: string | undefined): Promise<number> {
  const url = runningUrl();
  const target = resolve(file ?? join(BACKUP_DIR, `taskmesh-${stamp()}.tar.gz`));
  if (!target.endsWith(".tar.gz")) throw new UsageError(`${target}: a backup is a .tar.gz file`);
  if (existsSync(target)) throw new UsageError(`${target} exists: name a new file`);
  mkdirSync(join(target, ".."), { recursive: true });
  const work = mkdtempSync(join(STATE_DIR, "backup-"));
  const client = new pg.Client({ connectionString: url, application_name: "taskmesh db backup" });
  await client.connect();
  try {
    // The session that starts a (non-exclusive) backup must be the one that stops it.
    await client.query("SELECT pg_backup_start($1, true)", [`taskmesh ${stamp()}`]);
    const base = join(work, "base.tar");
    let stopped: { labelfile: string; spcmapfile: string | null };
    try {
      // Files change and vanish while the server runs: GNU tar says so and exits 1, which is expected here (the WAL makes it whole).
      const copy = await execa("tar", ["-C", DATA_DIR, "-cf", base, "--warning=no-file-changed", "--warning=no-file-removed", "--ignore-failed-read",
        ...EXCLUDED.flatMap((p) => ["--exclude", p]), "."], { reject: false, all: true });
      if (copy.exitCode !== 0 && copy.exitCode !== 1) throw new Error(`tar failed (${copy.exitCode}): ${copy.all}`);
    } finally {
      stopped = (await client.query<{ labelfile: string; spcmapfile: string | null }>("SELECT labelfile, spcmapfile FROM pg_backup_stop(false)")).rows[0]!;
    }
    // Every WAL segment up to the backup's end is in pg_wal now; the label tells the restored server where to start.
    const extra = join(work, "extra");
    mkdirSync(join(extra, "pg_wal"), { recursive: true });
    for (const name of readdirSync(join(DATA_DIR, "pg_wal"))) {
      if (/^[0-9A-F]{24}$/.test(name)) copyFileSync(join(DATA_DIR, "pg_wal", name), join(extra, "pg_wal", name));
    }
    writeFileSync(join(extra, "backup_label"), stopped.labelfile);
    if (stopped.spcmapfile) writeFileSync(join(extra, "tablespace_map"), stopped.spcmapfile);
    writeFileSync(join(extra, PASSWORD_IN_BACKUP), localSecret(PASSWORD_FILE), { mode: 0o600 });
    // By name, not ".": a second "." entry would set the restored directory's mode to this folder's.
    const append = await execa("tar", ["-C", extra, "-rf", base, ...readdirSync(extra)], { reject: false, all: true });
    if (append.exitCode !== 0) throw new Error(`tar failed (${append.exitCode}): ${append.all}`);
    const zip = await execa("gzip", [base], { reject: false, all: true });
    if (zip.exitCode !== 0) throw new Error(`gzip failed (${zip.exitCode}): ${zip.all}`);
    // Moved into place whole (a half-written backup never carries the final name).
    copyFileSync(`${base}.gz`, `${target}.partial`);
    chmodSync(`${target}.partial`, 0o600);
    renameSync(`${target}.partial`, target);
  } finally {
    await client.end().catch(() => undefined);
    rmSync(work, { recursive: true, force: true });
  }
  console.log(target);
  return 0;
}

/**
 * `taskmesh db restore <file>`: puts a `db backup` in place of the run's
 * Postgres data (and password), with the system stopped; the next `up`
 * starts from it. The data it replaces is kept as `.taskmesh/postgres.before-restore-<time>`.
 */
export async function dbRestore(file: string): Promise<number> {
  const source = resolve(file);
  if (!existsSync(source)) throw new UsageError(`${source}: no such backup`);
  const state = readState();
  if (state && alive(state.supervisorPid)) throw new UsageError("taskmesh is running: stop it first (npx taskmesh down), then restore");
  const work = mkdtempSync(join(STATE_DIR, "restore-"));
  try {
    const data = join(work, "postgres");
    mkdirSync(data, { mode: 0o700 });
    const untar = await execa("tar", ["-C", data, "-xzf", source], { reject: false, all: true });
    if (untar.exitCode !== 0) throw new Error(`${source} is not a backup tar.gz (${untar.all})`);
    if (!existsSync(join(data, "PG_VERSION")) || !existsSync(join(data, "backup_label")) || !existsSync(join(data, PASSWORD_IN_BACKUP))) {
      throw new UsageError(`${source} is not a taskmesh db backup (no PG_VERSION, backup_label or password in it)`);
    }
    chmodSync(data, 0o700); // Postgres refuses a data directory others may read
    const password = join(work, "postgres.password");
    renameSync(join(data, PASSWORD_IN_BACKUP), password);
    // Postgres runs as user postgres under root (provision/postgres.ts): it must own its data.
    const { uid, gid } = runAs();
    if (uid !== undefined && gid !== undefined) await execa("chown", ["-R", `${uid}:${gid}`, data]);
    if (existsSync(DATA_DIR)) renameSync(DATA_DIR, `${DATA_DIR}.before-restore-${stamp()}`);
    renameSync(data, DATA_DIR);
    renameSync(password, PASSWORD_FILE);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  console.log(`restored ${source}; npx taskmesh up starts from it`);
  return 0;
}
