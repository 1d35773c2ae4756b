import { ConfigServiceService } from "@taskmesh/contracts/gen/taskmesh/config/v1/config";
import {
  MeshServer, createLogger, createPool, envSchemas, kitEnvShape, loadEnv, migrate, runService, untilReady,
} from "@taskmesh/kit";
import { configHandlers } from "./handlers.js";
import { migrations } from "./sql/migrations.js";
import { ConfigStore } from "./store.js";
import { WatchHub } from "./watch-hub.js";

/** The config service's environment. */
const envShape = {
  ...kitEnvShape,
  /** The Postgres database holding schema `config`. */
  DATABASE_URL: envSchemas.url("postgres", "postgresql"),
};

await runService({
  name: "config",
  async start() {
    const env = loadEnv(envShape);
    const instance = env.TASKMESH_INSTANCE ?? "config";
    const log = createLogger({ service: "config", instance, level: env.LOG_LEVEL });
    const pool = createPool({ url: env.DATABASE_URL, applicationName: instance, logger: log });
    const store = new ConfigStore(pool);
    const hub = new WatchHub({ url: env.DATABASE_URL, store, logger: log });
    const server = new MeshServer({ name: "config", logger: log, shutdownGraceMs: env.TASKMESH_SHUTDOWN_GRACE })
      .addService(ConfigServiceService, configHandlers(store, hub))
      .onClose("postgres pool", () => pool.end())
      .onClose("watch hub", () => hub.stop());
    await server.listen(env.TASKMESH_LISTEN);
    return {
      server,
      log,
      async ready(signal) {
        await untilReady("postgres (migrations)", () => migrate(pool, "config", migrations, log), signal, log);
        await untilReady("postgres (LISTEN)", () => hub.start(), signal, log);
      },
    };
  },
});
