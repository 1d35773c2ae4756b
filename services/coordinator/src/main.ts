import { z } from "zod";
import { ConfigServiceService } from "@taskmesh/contracts/gen/taskmesh/config/v1/config";
import { ClusterServiceService } from "@taskmesh/contracts/gen/taskmesh/coordinator/v1/cluster_service";
import { TaskServiceService } from "@taskmesh/contracts/gen/taskmesh/coordinator/v1/task_service";
import { WorkerServiceService } from "@taskmesh/contracts/gen/taskmesh/coordinator/v1/worker_service";
import { LedgerServiceService } from "@taskmesh/contracts/gen/taskmesh/ledger/v1/ledger";
import {
  MeshServer, connectUpstream, createLogger, createPool, envSchemas, kitEnvShape, loadEnv, migrate, runService, untilReady, uuidv7, watchSetting,
} from "@taskmesh/kit";
import { buildLedger, migrations } from "@taskmesh/ledger-service";
import { Bus } from "./bus.js";
import { KnownCapabilities } from "./capabilities.js";
import { SubmitDedup } from "./dedup.js";
import { clusterService } from "./cluster-service.js";
import { Dispatcher } from "./dispatcher.js";
import { ledgerBatches } from "./ledger-batches.js";
import { ledgerInProcess } from "./ledger-in-process.js";
import { countDispatches, registerCoordinatorMetrics } from "./metrics.js";
import { STRATEGIES, parseStrategy } from "./strategies.js";
import { PendingGauge, taskService } from "./task-service.js";
import { isCapabilityName } from "./validation.js";
import { workerService } from "./worker-service.js";

/** The coordinator's environment. */
const envShape = {
  ...kitEnvShape,
  /** The ledger's Postgres database: a task's writes (submit, assignment, start, result) run in this process. */
  DATABASE_URL: envSchemas.url("postgres", "postgresql"),
  /** Redis: the submit dedup fast path and the replicas' bus. */
  REDIS_URL: envSchemas.url("redis"),
  /** The strategy while config key `/coordinator/dispatch/strategy` is unset. @default least_loaded */
  TASKMESH_COORDINATOR_STRATEGY: z.enum(STRATEGIES).default("least_loaded"),
  /** How often workers heartbeat. @default 5s */
  TASKMESH_COORDINATOR_HEARTBEAT: envSchemas.duration().pipe(z.number().min(100)).default(5000),
  /** Lease length per renewal; a dead worker's tasks return after at most this. @default 30s */
  TASKMESH_COORDINATOR_LEASE: envSchemas.duration().pipe(z.number().min(1000).max(600_000)).default(30_000),
  /** How often every capability is checked for due tasks without news (retries, other replicas). @default 1s */
  TASKMESH_COORDINATOR_POLL: envSchemas.duration().pipe(z.number().min(10)).default(1000),
  /** How often expired leases and timed-out attempts are taken back. @default 1s */
  TASKMESH_COORDINATOR_SWEEP: envSchemas.duration().pipe(z.number().min(10)).default(1000),
  /** Submits are refused (RESOURCE_EXHAUSTED) while this many tasks are pending. @default 100000 */
  TASKMESH_COORDINATOR_MAX_PENDING: envSchemas.positiveInt().default(100_000),
  /** Submits are refused while this many are in progress on one replica. @default 2000 */
  TASKMESH_COORDINATOR_MAX_SUBMITS: envSchemas.positiveInt().default(2000),
};

await runService({
  name: "coordinator",
  async start() {
    const env = loadEnv(envShape);
    const instance = env.TASKMESH_INSTANCE ?? "coordinator";
    const coordinatorId = `${instance}/${uuidv7().slice(-12)}`;
    const log = createLogger({ service: "coordinator", instance, level: env.LOG_LEVEL });
    // The task path writes the ledger from here (no hop); reads and administration call the ledger service.
    const pool = createPool({ url: env.DATABASE_URL, applicationName: `${instance}-ledger-writes`, logger: log });
    // The rows it leases are remembered, so each completion is one statement (see RowCache).
    const { handlers, queue } = buildLedger({ pool });
    const ledgerService = connectUpstream(LedgerServiceService, "ledger");
    const ledger = ledgerInProcess(ledgerService, handlers, log);
    const hasConfig = Boolean(process.env.TASKMESH_UPSTREAM_CONFIG?.trim() || env.TASKMESH_UPSTREAM);
    const config = hasConfig ? connectUpstream(ConfigServiceService, "config") : undefined;
    const bus = new Bus(env.REDIS_URL, log);
    // Claims and sync-matched creates count in taskmesh_dispatches_total.
    const counted = countDispatches(ledger, () => dispatcher.strategy);
    const dispatcher: Dispatcher = new Dispatcher(counted, bus, log, {
      leaseMs: env.TASKMESH_COORDINATOR_LEASE, pollMs: env.TASKMESH_COORDINATOR_POLL, sweepMs: env.TASKMESH_COORDINATOR_SWEEP,
    }, env.TASKMESH_COORDINATOR_STRATEGY);
    registerCoordinatorMetrics(dispatcher);
    const strategy = config
      ? watchSetting(config, { key: "/coordinator/dispatch/strategy", parse: parseStrategy, fallback: env.TASKMESH_COORDINATOR_STRATEGY, onChange: (next) => dispatcher.useStrategy(next), logger: log })
      : undefined;
    const configured = config
      ? watchSetting(config, { key: "/coordinator/capabilities", parse: parseCapabilityList, fallback: [] as readonly string[], logger: log })
      : undefined;
    if (!config) log.warn("no config upstream (TASKMESH_UPSTREAM_CONFIG): the dispatch strategy is fixed to TASKMESH_COORDINATOR_STRATEGY");
    const capabilities = new KnownCapabilities(ledger, () => configured?.get() ?? [], function* () {
      for (const s of dispatcher.sessions.values()) yield* s.capabilities;
    }, log);
    const pending = new PendingGauge();
    const batches = ledgerBatches(counted);
    const server = new MeshServer({ name: "coordinator", logger: log, shutdownGraceMs: env.TASKMESH_SHUTDOWN_GRACE })
      .addService(TaskServiceService, taskService({
        ledger, batches, dispatcher, bus, dedup: new SubmitDedup(bus.redis, log), capabilities, pending,
        limits: { maxPending: env.TASKMESH_COORDINATOR_MAX_PENDING, maxInFlightSubmits: env.TASKMESH_COORDINATOR_MAX_SUBMITS }, watchPollMs: 2000,
      }))
      .addService(ClusterServiceService, clusterService({ ledger, queue }))
      .addService(WorkerServiceService, workerService({
        ledger, batches, dispatcher, bus, coordinatorId, capabilities, timing: { heartbeatMs: env.TASKMESH_COORDINATOR_HEARTBEAT, registerTimeoutMs: 10_000 },
      }))
      // Workers keep their tasks running and reconnect at once to another replica.
      .onDrain("worker streams", () => Promise.all([...dispatcher.sessions.values()].map((s) => {
        s.drain();
        return s.send({ payload: { $case: "goAway", value: { reason: "coordinator shutting down", gracePeriod: { seconds: 0n, nanos: 500_000_000 }, reconnect: true } } }).catch(() => undefined);
      })))
      .onClose("ledger client", () => ledgerService.close())
      .onClose("postgres pool", () => pool.end())
      .onClose("config", () => {
        strategy?.close();
        configured?.close();
        config?.close();
      })
      .onClose("redis", () => bus.close())
      .onClose("dispatcher", () => dispatcher.stop());
    await server.listen(env.TASKMESH_LISTEN);
    // The pending count reads every entry of the dispatch index (about 70 ms with 50,000 pending while
    // they are being claimed), so it runs at most 2% of the time: after a count that took d ms, the
    // next one waits max(1 s, 50·d). Submits here are added to the gauge in between.
    let countMs = 0;
    const refresh = async (): Promise<void> => {
      const started = performance.now();
      pending.set(await queue.pendingCount());
      countMs = performance.now() - started;
      await capabilities.refreshIfStale();
    };
    return {
      server,
      log,
      async ready(signal) {
        await untilReady("redis", () => bus.connect(), signal, log);
        // The ledger's schema, migrated here too (under the migration lock), as this process writes it.
        await untilReady("postgres (ledger schema)", () => migrate(pool, "ledger", migrations, log), signal, log);
        await untilReady("ledger", refresh, signal, log);
        if (strategy) dispatcher.useStrategy((await strategy.ready, strategy.get()));
        bus.onWork((capability) => dispatcher.queued(capability));
        dispatcher.start();
        let timer: NodeJS.Timeout | undefined;
        let closed = false;
        const next = (): void => {
          if (closed) return;
          timer = setTimeout(() => void refresh().catch((error: unknown) => log.debug({ err: error }, "pending count refresh failed")).finally(next),
            Math.max(1000, 50 * countMs));
          timer.unref();
        };
        next();
        server.onClose("pending gauge", () => {
          closed = true;
          clearTimeout(timer);
        });
      },
    };
  },
});

/** The value of `/coordinator/capabilities`: a JSON list of capability names. */
function parseCapabilityList(value: unknown): readonly string[] {
  if (!Array.isArray(value) || !value.every((c) => typeof c === "string" && isCapabilityName(c))) {
    throw new Error("expected a JSON list of capability names");
  }
  return value;
}
