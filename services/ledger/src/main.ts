import { z } from "zod";
import { createLogger, createPool, envSchemas, kitEnvShape, loadEnv, runService } from "@taskmesh/kit";
import { buildLedgerService } from "./build.js";
import { registerLedgerMetrics } from "./metrics.js";
import { Retention } from "./retention.js";
import { OutboxRelay, TASKS_TOPIC } from "./outbox-relay.js";

/** The ledger service's environment. */
const envShape = {
  ...kitEnvShape,
  /** The Postgres database holding schema `ledger`. */
  DATABASE_URL: envSchemas.url("postgres", "postgresql"),
  /** Kafka bootstrap brokers, comma-separated `host:port`; unset: no outbox relay (rows stay unpublished). */
  KAFKA_BROKERS: z.string().trim().transform((s) => s.split(",").map((b) => b.trim()).filter((b) => b !== ""))
    .pipe(z.array(envSchemas.address()).min(1, "expected at least one host:port")).optional(),
  /** The topic the outbox relay publishes task events to. */
  TASKMESH_OUTBOX_TOPIC: z.string().trim().regex(/^[A-Za-z0-9._-]{1,249}$/, "expected a Kafka topic name").default(TASKS_TOPIC),
  /** How long a finished task (and its history) is kept after it finished; 0 keeps every task. @default 7d */
  TASKMESH_LEDGER_RETENTION: envSchemas.duration().default(7 * 86_400_000),
  /** Time between two retention passes. @default 1m */
  TASKMESH_LEDGER_RETENTION_INTERVAL: envSchemas.duration().pipe(z.number().min(100)).default(60_000),
};

await runService({
  name: "ledger",
  async start() {
    const env = loadEnv(envShape);
    const instance = env.TASKMESH_INSTANCE ?? "ledger";
    const log = createLogger({ service: "ledger", instance, level: env.LOG_LEVEL });
    const pool = createPool({ url: env.DATABASE_URL, applicationName: instance, logger: log });
    registerLedgerMetrics(pool, { log });
    const relay = env.KAFKA_BROKERS
      ? new OutboxRelay({ databaseUrl: env.DATABASE_URL, brokers: env.KAFKA_BROKERS, topic: env.TASKMESH_OUTBOX_TOPIC, logger: log, name: `${instance}-outbox-relay` })
      : undefined;
    const retention = new Retention(pool, { retentionMs: env.TASKMESH_LEDGER_RETENTION, intervalMs: env.TASKMESH_LEDGER_RETENTION_INTERVAL, logger: log });
    if (!relay) log.warn("KAFKA_BROKERS is not set: the outbox relay is off and outbox rows stay unpublished");
    const ledger = buildLedgerService({ name: "ledger", logger: log, pool, shutdownGraceMs: env.TASKMESH_SHUTDOWN_GRACE, retention, ...(relay ? { relay } : {}) });
    await ledger.server.listen(env.TASKMESH_LISTEN);
    return {
      server: ledger.server,
      log,
      async ready(signal) {
        await ledger.ready(signal);
        if (env.TASKMESH_LEDGER_RETENTION === 0) log.info("TASKMESH_LEDGER_RETENTION is 0: finished tasks are kept for ever");
      },
    };
  },
});
