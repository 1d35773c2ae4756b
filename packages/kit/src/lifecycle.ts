import type { Logger } from "pino";
import { EnvError, kitEnvShape, loadEnv } from "./env.js";
import { enableProcessMetrics, startMetricsServer } from "./metrics.js";
import type { MeshServer } from "./server.js";
import { shutdownTelemetry } from "./telemetry/sdk.js";

/** A service process's exit codes: they say how it ended. */
export const EXIT_CODES = {
  /** Stopped on a signal after every call finished. */
  drained: 0,
  /** Failed to start, or crashed. */
  failed: 1,
  /** A bad environment variable (the message names it). */
  badConfig: 2,
  /** Stopped on a signal, but calls were cut off: the grace period ran out, or a second signal came. */
  forced: 3,
} as const;

const SIGNALS = ["SIGTERM", "SIGINT"] as const;

/**
 * Calls `first` on the first SIGTERM or SIGINT and `again` on every later
 * one. Registers its handlers once; the returned function removes them.
 */
export function onShutdownSignal(first: (signal: NodeJS.Signals) => void, again: (signal: NodeJS.Signals) => void): () => void {
  let seen = false;
  const handler = (signal: NodeJS.Signals): void => {
    if (seen) return again(signal);
    seen = true;
    first(signal);
  };
  for (const signal of SIGNALS) process.on(signal, handler);
  return () => {
    for (const signal of SIGNALS) process.off(signal, handler);
  };
}

/** A started service: its server (bound, NOT_SERVING) and what must be ready before it serves. */
export interface StartedService {
  readonly server: MeshServer;
  readonly log: Logger;
  /**
   * Waits for the service's dependencies (database, migrations, watchers);
   * health turns SERVING when it resolves. Aborted when shutdown begins.
   */
  readonly ready?: (signal: AbortSignal) => Promise<void>;
}

/**
 * A service put together by its `build(deps)`, which its main.ts (with
 * clients made from the environment) and the tests (with their own
 * databases and brokers) both call: the server, not yet bound and
 * NOT_SERVING, with the service's closers registered, and what must be
 * ready before it serves.
 */
export interface BuiltService {
  readonly server: MeshServer;
  /** Waits for the service's dependencies (migrations, connections, watchers); aborted when shutdown begins. */
  ready(signal: AbortSignal): Promise<void>;
}

/**
 * Runs a built service in this process as {@link runService} runs it in its
 * own: binds `address`, waits until it is ready (at most until `signal`
 * aborts; the server is shut down then) and marks it SERVING. Answers the
 * bound port. For the tests, and for a program embedding a service.
 */
export async function serveBuilt(built: BuiltService, address: string, signal: AbortSignal = AbortSignal.timeout(60_000)): Promise<number> {
  const port = await built.server.listen(address);
  try {
    await built.ready(signal);
  } catch (error) {
    await built.server.shutdown();
    throw error;
  }
  built.server.markServing();
  return port;
}

/** What {@link runService} needs: how to build the service. */
export interface RunServiceOptions {
  /** The service's short name, for messages. */
  readonly name: string;
  /** Reads the environment, builds and binds the server; may throw EnvError for a bad environment. */
  readonly start: () => Promise<StartedService>;
}

/**
 * Runs a service process: starts it, opens its metrics endpoint when
 * `TASKMESH_METRICS_LISTEN` is set (process and RPC series, plus whatever the
 * service registered), waits until it is ready (health SERVING), serves
 * until SIGTERM/SIGINT, shuts down in order (a second signal forces; the
 * metrics endpoint closes after the server stopped), flushes telemetry and
 * exits with an {@link EXIT_CODES} code. The only place a service process exits.
 */
export async function runService(options: RunServiceOptions): Promise<void> {
  const exit = async (code: number): Promise<never> => {
    await shutdownTelemetry();
    process.exit(code);
  };
  let started: StartedService;
  try {
    const { TASKMESH_METRICS_LISTEN: metricsAddress } = loadEnv({ TASKMESH_METRICS_LISTEN: kitEnvShape.TASKMESH_METRICS_LISTEN });
    started = await options.start();
    if (metricsAddress) {
      const { server, log } = started;
      enableProcessMetrics();
      const metrics = await startMetricsServer({ address: metricsAddress, log }).catch(async (error: unknown) => {
        await server.shutdown();
        throw error;
      });
      server.onClose("metrics endpoint", () => metrics.close());
      log.info({ address: metricsAddress, port: metrics.port }, "metrics at /metrics");
    }
  } catch (error) {
    const bad = error instanceof EnvError;
    process.stderr.write(`${options.name}: ${bad ? error.message : `failed to start: ${(error as Error)?.stack ?? String(error)}`}\n`);
    return exit(bad ? EXIT_CODES.badConfig : EXIT_CODES.failed);
  }
  const { server, log } = started;
  const stopping = new AbortController();
  process.on("uncaughtException", (error) => {
    log.fatal({ err: error }, "uncaught exception");
    server.forceStop();
    void exit(EXIT_CODES.failed);
  });
  process.on("unhandledRejection", (error) => {
    log.fatal({ err: error }, "unhandled rejection");
    server.forceStop();
    void exit(EXIT_CODES.failed);
  });
  onShutdownSignal(
    (signal) => {
      log.info({ signal }, "shutting down");
      stopping.abort(new Error(`received ${signal}`));
      void server.shutdown().then((outcome) => exit(outcome === "drained" ? EXIT_CODES.drained : EXIT_CODES.forced));
    },
    (signal) => {
      log.warn({ signal }, "second signal: forcing shutdown");
      server.forceStop();
      void exit(EXIT_CODES.forced);
    },
  );
  try {
    await started.ready?.(stopping.signal);
  } catch (error) {
    if (stopping.signal.aborted) return; // shutdown is under way
    log.fatal({ err: error }, "failed to get ready");
    await server.shutdown();
    return exit(EXIT_CODES.failed);
  }
  if (stopping.signal.aborted) return;
  server.markServing();
  log.info({ port: server.port, services: server.services }, "serving");
}
