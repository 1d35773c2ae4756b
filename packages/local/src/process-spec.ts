/** What kind of process a spec runs; `taskmesh status` groups by it. */
export type ProcessKind = "infra" | "service" | "sidecar" | "edge";

/**
 * One process the local runtime runs: how to start it, how to tell it is
 * ready for real, and how to stop it. Built by the provisioning modules
 * (`packages/local/src/provision/*.ts`) and the service plan; run by the supervisor.
 */
export interface ProcessSpec {
  /** Unique name, e.g. `postgres`, `kafka`, `config-0`. */
  readonly name: string;
  readonly kind: ProcessKind;
  /** For a sidecar, the service it serves; for a service, its own name. */
  readonly service?: string;
  /** The executable (absolute path) and its arguments. */
  readonly command: string;
  readonly args: readonly string[];
  /** Extra environment, on top of the supervisor's. */
  readonly env?: Readonly<Record<string, string>>;
  readonly cwd?: string;
  /** Run as this user and group (e.g. Postgres when the supervisor is root). */
  readonly uid?: number;
  readonly gid?: number;
  /** The ports it listens on, by role (`app`, `admin`, `otlp-grpc`, ...). */
  readonly ports: Readonly<Record<string, number>>;
  /** Names of the processes that must be ready before this one starts. */
  readonly dependsOn?: readonly string[];
  /** Runs before each start (e.g. format Kafka's storage on first start). */
  readonly prepare?: (signal: AbortSignal) => Promise<void>;
  /**
   * One readiness probe: resolves true when the process answers for real (a
   * query, PING, a metadata request, an HTTP 200, gRPC health SERVING), false
   * (or throws) when not yet. The supervisor calls it until true or timeout.
   */
  readonly ready: (signal: AbortSignal) => Promise<boolean>;
  /** Runs once it is ready (e.g. create Kafka topics). */
  readonly afterReady?: (signal: AbortSignal) => Promise<void>;
  /** How long it may take to become ready, in ms. @default 60000 */
  readonly readyTimeoutMs?: number;
  /** The signal that stops it gracefully. @default SIGTERM */
  readonly stopSignal?: NodeJS.Signals;
  /** How long a graceful stop may take before SIGKILL, in ms. @default 15000 */
  readonly stopGraceMs?: number;
}
