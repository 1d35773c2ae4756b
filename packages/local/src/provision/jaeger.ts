import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { execa } from "execa";
import { stringify } from "yaml";
import type { ProcessSpec } from "../process-spec.js";
import { cacheDir, MissingPrerequisite, pinned } from "./versions.js";

/** Options of {@link jaegerSpec}. */
export interface JaegerSpecOptions {
  /** Holds the generated configuration, `jaeger.yaml`. Created when missing. */
  readonly stateDir: string;
  /** Jaeger UI and its HTTP query API (`/api/...`) on 127.0.0.1. @default 16686 */
  readonly uiPort?: number;
  /** OTLP gRPC receiver on 127.0.0.1. @default 4317 */
  readonly otlpGrpcPort?: number;
  /** OTLP HTTP receiver (`POST /v1/traces`) on 127.0.0.1. @default 4318 */
  readonly otlpHttpPort?: number;
  /** The query API over gRPC (`jaeger.api_v2.QueryService`, api_v3) on 127.0.0.1. @default 16685 */
  readonly queryGrpcPort?: number;
  /** Where Jaeger writes `jaeger.log`; without it Jaeger logs to stderr (the supervisor's log). */
  readonly logDir?: string;
  /** The in-memory store keeps at most this many traces, dropping the oldest. @default 50000 */
  readonly maxTraces?: number;
  /**
   * A built jaeger-ui folder (its `index.html` and `static/`), served as the
   * UI instead of the binary's own assets ({@link jaegerUiDir}). Without it,
   * a Jaeger built from the Go module proxy serves a placeholder page.
   */
  readonly uiAssetsDir?: string;
  /** The address every listener binds: 0.0.0.0 in a container, reached by the others by name. @default 127.0.0.1 */
  readonly listenAddress?: string;
}

export { JAEGER_UI_DIR_VARIABLE, JAEGER_UI_PLACEHOLDER_NOTE, jaegerUiDir } from "./jaeger-ui.js";

const GO_MISSING = "jaeger is built with Go, which is missing: install Go 1.24 or later (Debian: apt-get install golang)";

/** The pinned Jaeger: its Go module, the package of its main, and where the binary goes. */
function target(): { module: string; pkg: string; version: string; binary: string } {
  const { go, version } = pinned("jaeger");
  const at = go?.indexOf("/cmd/") ?? -1;
  if (!go || at < 0) throw new Error("deploy/versions.json: jaeger needs a go package like github.com/jaegertracing/jaeger/cmd/jaeger");
  // cacheDir/<last element of the package>, as go install would name it.
  return { module: go.slice(0, at), pkg: `.${go.slice(at)}`, version, binary: join(cacheDir("jaeger", version), go.slice(go.lastIndexOf("/") + 1)) };
}

/** The Jaeger v2 version a v1.x module tag stands for, from the module's CHANGELOG (`v1.76.0 / v2.13.0 (…)`). */
function v2Version(moduleDir: string, version: string): string {
  try {
    const changelog = readFileSync(join(moduleDir, "CHANGELOG.md"), "utf8");
    const escaped = version.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    return new RegExp(`^${escaped} / (v2\\.\\d+\\.\\d+)`, "m").exec(changelog)?.[1] ?? version;
  } catch {
    return version;
  }
}

let building: Promise<string> | undefined;

/**
 * The path of the pinned Jaeger v2 binary (`jaeger` in versions.json), built
 * once from its Go module into `cacheDir("jaeger", version)`. Jaeger's Go
 * module is `github.com/jaegertracing/jaeger` (its tags v1.x.y carry the v2
 * binary too: v1.76.0 is v2.13.0), and its go.mod has a `replace`
 * directive, so `go install pkg@version` refuses it: the module is
 * downloaded with `go mod download` and built inside its own folder of the
 * module cache, with the v2 version stamped in. Takes minutes the first
 * time. Throws MissingPrerequisite when Go is missing.
 */
export function ensureJaeger(signal?: AbortSignal): Promise<string> {
  if (jaegerBuilt()) return Promise.resolve(target().binary);
  building ??= build(signal).finally(() => (building = undefined));
  return building;
}

/** Whether the pinned Jaeger is built already (ensureJaeger then returns at once). */
export function jaegerBuilt(): boolean {
  return existsSync(target().binary);
}

async function build(signal?: AbortSignal): Promise<string> {
  const { module, pkg, version, binary } = target();
  const cancel = signal ? { cancelSignal: signal } : {};
  try {
    await execa("go", ["version"], cancel);
  } catch (error) {
    if (signal?.aborted) throw error;
    throw new MissingPrerequisite(GO_MISSING);
  }
  const download = await execa("go", ["mod", "download", "-json", `${module}@${version}`], { reject: false, ...cancel });
  if (download.failed) throw new Error(`go mod download ${module}@${version} failed:\n${download.stdout}\n${download.stderr}`, { cause: download });
  const moduleDir = (JSON.parse(download.stdout) as { Dir?: string }).Dir;
  if (!moduleDir) throw new Error(`go mod download ${module}@${version} gave no folder:\n${download.stdout}`);
  // Linked aside and renamed into place, so a half-built or concurrent build is never taken for a finished one.
  mkdirSync(join(binary, ".."), { recursive: true });
  const partial = `${binary}.partial-${process.pid}`;
  const ldflags = ["-s", "-w", `-X ${module}/internal/version.latestVersion=${v2Version(moduleDir, version)}`].join(" ");
  try {
    // The module cache is read-only: the build writes only its own cache and the output file.
    const result = await execa("go", ["build", "-trimpath", "-ldflags", ldflags, "-o", partial, pkg],
      { cwd: moduleDir, all: true, reject: false, env: { GOFLAGS: "-mod=readonly" }, ...cancel });
    if (result.failed) throw new Error(`go build of ${module}/${pkg.slice(2)}@${version} failed:\n${result.all?.split("\n").slice(-20).join("\n")}`, { cause: result });
    renameSync(partial, binary);
  } finally {
    rmSync(partial, { force: true });
  }
  return binary;
}

/** The ports of a Jaeger, defaults filled in. */
function ports(options: JaegerSpecOptions) {
  return {
    ui: options.uiPort ?? 16686,
    otlpGrpc: options.otlpGrpcPort ?? 4317,
    otlpHttp: options.otlpHttpPort ?? 4318,
    queryGrpc: options.queryGrpcPort ?? 16685,
  };
}

/**
 * Jaeger v2's configuration (an OpenTelemetry Collector configuration):
 * OTLP gRPC and HTTP receivers → batch → in-memory storage holding at most
 * `maxTraces` traces; the query extension serves the UI and the API. Every
 * listener is on 127.0.0.1 (or `listenAddress`); the collector's own metrics are off (they would
 * listen on port 8888, shared by every Jaeger on the machine), and so is the
 * query service's tracing of itself.
 */
export function jaegerConfig(options: JaegerSpecOptions): string {
  const p = ports(options);
  const local = (port: number) => `${options.listenAddress ?? "127.0.0.1"}:${port}`;
  const config = {
    service: {
      extensions: ["jaeger_storage", "jaeger_query"],
      pipelines: { traces: { receivers: ["otlp"], processors: ["batch"], exporters: ["jaeger_storage_exporter"] } },
      telemetry: {
        resource: { "service.name": "jaeger" },
        metrics: { level: "none" },
        traces: { level: "none" },
        logs: { level: "info", ...(options.logDir ? { output_paths: [join(options.logDir, "jaeger.log")], error_output_paths: [join(options.logDir, "jaeger.log")] } : {}) },
      },
    },
    extensions: {
      jaeger_storage: { backends: { memstore: { memory: { max_traces: options.maxTraces ?? 50_000 } } } },
      jaeger_query: {
        storage: { traces: "memstore" },
        // Else the query service traces itself over OTLP to localhost:4317: into this Jaeger, or another one.
        enable_tracing: false,
        http: { endpoint: local(p.ui) },
        grpc: { endpoint: local(p.queryGrpc) },
        ...(options.uiAssetsDir ? { ui: { assets_path: options.uiAssetsDir } } : {}),
      },
    },
    receivers: { otlp: { protocols: { grpc: { endpoint: local(p.otlpGrpc) }, http: { endpoint: local(p.otlpHttp) } } } },
    processors: { batch: {} },
    exporters: { jaeger_storage_exporter: { trace_storage: "memstore" } },
  };
  return `# Written by taskmesh (packages/local/src/provision/jaeger.ts) before each start: edits are lost.\n${stringify(config)}`;
}

/** True when something accepts TCP connections on 127.0.0.1:`port`. */
function listening(port: number, signal?: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: "127.0.0.1", port, ...(signal ? { signal } : {}) });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1000, () => done(false));
    socket.once("connect", () => done(true));
    socket.once("error", () => done(false));
  });
}

/** One readiness probe: the query API answers `/api/services` with 200 and both OTLP receivers accept connections. */
export async function jaegerReady(options: JaegerSpecOptions, signal?: AbortSignal): Promise<boolean> {
  const p = ports(options);
  try {
    const response = await fetch(`http://127.0.0.1:${p.ui}/api/services`, { ...(signal ? { signal } : {}) });
    await response.body?.cancel();
    if (response.status !== 200) return false;
  } catch {
    if (signal?.aborted) throw signal.reason;
    return false;
  }
  // The collector starts its receivers after its extensions: wait for them too.
  return (await listening(p.otlpGrpc, signal)) && (await listening(p.otlpHttp, signal));
}

/**
 * Jaeger v2 as a supervised process: the pinned binary (built when needed,
 * see {@link ensureJaeger}) with the configuration of {@link jaegerConfig},
 * rewritten into `stateDir/jaeger.yaml` before each start. Traces live in
 * memory only. Ready when the query API and both OTLP receivers answer.
 */
export function jaegerSpec(options: JaegerSpecOptions): ProcessSpec {
  const p = ports(options);
  const { binary } = target();
  const configFile = join(options.stateDir, "jaeger.yaml");
  return {
    name: "jaeger",
    kind: "infra",
    command: binary,
    args: [`--config=file:${configFile}`],
    cwd: options.stateDir,
    ports: { ui: p.ui, "otlp-grpc": p.otlpGrpc, "otlp-http": p.otlpHttp, "query-grpc": p.queryGrpc },
    prepare: async (signal) => {
      await ensureJaeger(signal);
      mkdirSync(options.stateDir, { recursive: true });
      if (options.logDir) mkdirSync(options.logDir, { recursive: true });
      writeFileSync(configFile, jaegerConfig(options));
    },
    ready: (signal) => jaegerReady(options, signal),
    readyTimeoutMs: 30_000,
    stopSignal: "SIGTERM",
    stopGraceMs: 10_000,
  };
}
