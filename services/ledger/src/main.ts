import { LedgerServiceService } from "../../../gen/taskmesh/ledger/v1/ledger.js";
import {
  MeshServer, createLogger, createPool, envSchemas, kitEnvShape, loadEnv, migrate, runService, untilReady,
} from "../../kit/src/index.js";
import { ledgerHandlers } from "./handlers.js";
import { migrations } from "./sql/migrations.js";
import { QueueStore } from "./queue-store.js";
import { LedgerStore } from "./store.js";
import { WorkerStore } from "./worker-store.js";

/** The ledger service's environment. */
const envShape = {
  ...kitEnvShape,
  /** The Postgres database holding schema `ledger`. */
  DATABASE_URL: envSchemas.url("postgres", "postgresql"),
};

await runService({
  name: "ledger",
  async start() {
    const env = loadEnv(envShape);
    const instance = env.TASKMESH_INSTANCE ?? "ledger";
    const log = createLogger({ service: "ledger", instance, level: env.LOG_LEVEL });
    const pool = createPool({ url: env.DATABASE_URL, applicationName: instance, logger: log });
    const server = new MeshServer({ name: "ledger", logger: log, shutdownGraceMs: env.TASKMESH_SHUTDOWN_GRACE })
      .addService(LedgerServiceService, ledgerHandlers(new LedgerStore(pool), new QueueStore(pool), new WorkerStore(pool)))
      .onClose("postgres pool", () => pool.end());
    await server.listen(env.TASKMESH_LISTEN);
    return {
      server,
      log,
      async ready(signal) {
        await untilReady("postgres (migrations)", () => migrate(pool, "ledger", migrations, log), signal, log);
      },
    };
  },
});
