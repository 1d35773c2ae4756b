import type pg from "pg";
import { ConfigServiceService } from "@taskmesh/contracts/gen/taskmesh/config/v1/config";
import { MeshServer, migrate, untilReady, type BuiltService, type Logger } from "@taskmesh/kit";
import { configHandlers } from "./handlers.js";
import { migrations } from "./sql/migrations.js";
import { ConfigStore } from "./store.js";
import { WatchHub } from "./watch-hub.js";

/** What {@link buildConfig} needs: made from the environment by main.ts, or by a test. */
export interface ConfigDeps {
  /** The server's name (logs, health). */
  readonly name: string;
  readonly logger: Logger;
  /** The pool over schema `config`'s database; the service ends it when it shuts down. */
  readonly pool: pg.Pool;
  /** The same database, for the watch hub's own LISTEN connection. */
  readonly databaseUrl: string;
  readonly shutdownGraceMs: number;
  /** The longest wait before the watch hub connects again. @default 5 s */
  readonly maxBackoffMs?: number;
}

/** The config service, built: its store and watch hub beside the server. */
export interface ConfigService extends BuiltService {
  readonly store: ConfigStore;
  readonly hub: WatchHub;
}

/**
 * The config service's wiring, the one place it is put together: for
 * main.ts and the tests alike. Ready once its migrations ran and the watch
 * hub listens.
 */
export function buildConfig(deps: ConfigDeps): ConfigService {
  const { pool, logger } = deps;
  const store = new ConfigStore(pool);
  const hub = new WatchHub({ url: deps.databaseUrl, store, logger, ...(deps.maxBackoffMs !== undefined ? { maxBackoffMs: deps.maxBackoffMs } : {}) });
  const server = new MeshServer({ name: deps.name, logger, shutdownGraceMs: deps.shutdownGraceMs })
    .addService(ConfigServiceService, configHandlers(store, hub))
    .onClose("postgres pool", () => pool.end())
    .onClose("watch hub", () => hub.stop());
  return {
    server, store, hub,
    async ready(signal) {
      await untilReady("postgres (migrations)", () => migrate(pool, "config", migrations, logger), signal, logger);
      await untilReady("postgres (LISTEN)", () => hub.start(), signal, logger);
    },
  };
}
