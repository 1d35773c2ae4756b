import { createLogger, createPool, envSchemas, kitEnvShape, loadEnv, runService } from "@taskmesh/kit";
import { buildConfig } from "./build.js";

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
    const config = buildConfig({ name: "config", logger: log, pool, databaseUrl: env.DATABASE_URL, shutdownGraceMs: env.TASKMESH_SHUTDOWN_GRACE });
    await config.server.listen(env.TASKMESH_LISTEN);
    return { server: config.server, log, ready: config.ready };
  },
});
