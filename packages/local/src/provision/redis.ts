import { accessSync, constants, existsSync, mkdirSync } from "node:fs";
import { delimiter, join } from "node:path";
import { execa } from "execa";
import { Redis } from "ioredis";
import type { ProcessSpec } from "../process-spec.js";
import { aptInstall } from "./apt.js";
import { MissingPrerequisite, pinned } from "./versions.js";

/** The Redis programs found (or installed) on this machine. */
export interface RedisInstall {
  /** Absolute path of `redis-server`. */
  readonly server: string;
  /** Absolute path of `redis-cli`, when it is there (Debian: package redis-tools, a dependency of redis-server). */
  readonly cli?: string;
  /** The installed version: Debian's package version when dpkg knows it (`5:7.0.15-1~deb12u10`), else Redis's own (`7.0.15`). */
  readonly version: string;
}

/** Options of {@link redisSpec}. */
export interface RedisSpecOptions {
  /** Redis's working directory: the append-only files (`appendonlydir/`) live here. Created when missing. */
  readonly dataDir: string;
  /** TCP port on 127.0.0.1. @default 16379 */
  readonly port?: number;
  /** Where Redis writes `redis-server.log`; without it Redis logs to stdout (the supervisor's `redis.log`). */
  readonly logDir?: string;
}

const MISSING = "redis-server is missing: sudo apt-get install redis-server";
/** Where Debian's package puts it (also when /usr/bin is not on PATH). */
const FALLBACK_DIRS = ["/usr/bin", "/usr/local/bin", "/usr/sbin", "/opt/homebrew/bin"];

/** The first executable `name` on PATH or in the usual folders. */
function findExecutable(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? "").split(delimiter).filter(Boolean), ...FALLBACK_DIRS];
  for (const dir of dirs) {
    try {
      accessSync(join(dir, name), constants.X_OK);
      return join(dir, name);
    } catch {
      // not here
    }
  }
  return undefined;
}

/** `5:7.0.15-1~deb12u10` → `7.0.15`: the upstream part of a Debian version. */
function upstreamVersion(debianVersion: string): string {
  return debianVersion.replace(/^\d+:/, "").replace(/-[^-]*$/, "");
}

/** The installed version, Debian's when dpkg knows the package, else `redis-server --version`'s. */
async function installedVersion(server: string, pkg: string, signal?: AbortSignal): Promise<string> {
  const opts = { reject: false, ...(signal ? { cancelSignal: signal } : {}) } as const;
  const dpkg = await execa("dpkg-query", ["-W", "-f=${Version}", pkg], opts).catch(() => undefined);
  if (dpkg && !dpkg.failed && dpkg.stdout.trim()) return dpkg.stdout.trim();
  const own = await execa(server, ["--version"], opts);
  return /v=(\S+)/.exec(own.stdout)?.[1] ?? "unknown";
}

let warned = false;

/** Warns once (does not fail) when the installed Redis is not the pinned one. */
function checkVersion(installed: string, pin: string): void {
  const same = installed.includes(":") || installed.includes("-") ? installed === pin : installed === upstreamVersion(pin);
  if (same || warned) return;
  warned = true;
  process.emitWarning(`redis-server ${installed} is installed; deploy/versions.json pins ${pin}`, { code: "TASKMESH_VERSION" });
}

/** Stops and disables the Debian service that the package may have started: taskmesh runs its own instance. */
async function stopDebianService(signal?: AbortSignal): Promise<void> {
  const opts = { reject: false, ...(signal ? { cancelSignal: signal } : {}) } as const;
  if (existsSync("/run/systemd/system")) {
    await execa("systemctl", ["disable", "--now", "redis-server.service"], opts).catch(() => undefined);
  } else if (existsSync("/etc/init.d/redis-server")) {
    // Without systemd (containers): usually never started (policy-rc.d), stopping is harmless then.
    await execa("/etc/init.d/redis-server", ["stop"], opts).catch(() => undefined);
  }
}

/** Installs Debian's Redis package and stops the service it starts (the supervisor runs its own redis-server). */
async function installRedis(pkg: string, signal?: AbortSignal): Promise<void> {
  await aptInstall(pkg, signal);
  await stopDebianService(signal);
}

let installing: Promise<void> | undefined;

/**
 * The system's `redis-server` (and `redis-cli`). When it is missing: as
 * root, installs Debian's package (`redis` in versions.json) with apt-get
 * and stops the Debian service it brings; otherwise throws
 * MissingPrerequisite. Warns (once) when the installed version is not the
 * pinned one.
 */
export async function ensureRedis(signal?: AbortSignal): Promise<RedisInstall> {
  const { debian: pkg = "redis-server", version: pin } = pinned("redis");
  let server = findExecutable("redis-server");
  if (!server) {
    if (process.getuid?.() !== 0) throw new MissingPrerequisite(MISSING);
    if (!findExecutable("apt-get")) throw new MissingPrerequisite(MISSING.replace("sudo apt-get install redis-server", "install Redis 7 (redis-server) with your package manager"));
    installing ??= installRedis(pkg, signal).finally(() => (installing = undefined));
    await installing;
    server = findExecutable("redis-server");
    if (!server) throw new Error(`apt-get installed ${pkg} but no redis-server is on PATH or in /usr/bin`);
  }
  const version = await installedVersion(server, pkg, signal);
  checkVersion(version, pin);
  const cli = findExecutable("redis-cli");
  return { server, ...(cli ? { cli } : {}), version };
}

/** The URL clients use (`REDIS_URL`). */
export function redisUrl(port = 16379): string {
  return `redis://127.0.0.1:${port}`;
}

/**
 * One PING through a short-lived ioredis client: true on PONG, false when
 * nothing answers or Redis is not ready (still loading its AOF). Never
 * reconnects; always closes the client. Rejects only when `signal` aborts.
 */
export async function pingRedis(port: number, signal?: AbortSignal): Promise<boolean> {
  signal?.throwIfAborted();
  const client = new Redis({
    host: "127.0.0.1", port, lazyConnect: true, connectTimeout: 1000, commandTimeout: 1000,
    maxRetriesPerRequest: 0, retryStrategy: () => null, enableOfflineQueue: false, enableReadyCheck: false,
  });
  client.on("error", () => undefined); // reported through the promises below
  const onAbort = (): void => client.disconnect();
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    await client.connect();
    return (await client.ping()) === "PONG";
  } catch {
    if (signal?.aborted) throw signal.reason;
    return false;
  } finally {
    signal?.removeEventListener("abort", onAbort);
    if (client.status === "ready") await client.quit().catch(() => client.disconnect());
    else client.disconnect();
  }
}

/**
 * Redis as a supervised process: the system's `redis-server` (installed
 * when needed, see {@link ensureRedis}) on 127.0.0.1 only, with no config
 * file: every write goes to the append-only file in `dataDir` (fsync every
 * second), no RDB snapshots, protected mode on. Ready when PING answers
 * PONG (not while the AOF is still loading).
 */
export function redisSpec(options: RedisSpecOptions): ProcessSpec {
  const port = options.port ?? 16379;
  const { dataDir, logDir } = options;
  let server = findExecutable("redis-server");
  return {
    name: "redis",
    kind: "infra",
    // Resolved again by `prepare`, which may have installed it.
    get command() {
      return server ?? "/usr/bin/redis-server";
    },
    args: [
      "--bind", "127.0.0.1", "--port", String(port), "--protected-mode", "yes",
      "--dir", dataDir, "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
      "--daemonize", "no", "--supervised", "no",
      "--logfile", logDir ? join(logDir, "redis-server.log") : "",
    ],
    cwd: dataDir,
    ports: { app: port },
    prepare: async (signal) => {
      server = (await ensureRedis(signal)).server;
      mkdirSync(dataDir, { recursive: true });
      if (logDir) mkdirSync(logDir, { recursive: true });
    },
    ready: (signal) => pingRedis(port, signal),
    readyTimeoutMs: 30_000,
    stopSignal: "SIGTERM",
    stopGraceMs: 10_000,
  };
}
