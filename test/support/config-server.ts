import { ConfigServiceService } from "@taskmesh/contracts/gen/taskmesh/config/v1/config";
import { ConfigStore, WatchHub, configHandlers, migrations } from "../../services/config/src/index.js";
import { MeshServer, createClient, createLogger, createPool, migrate, type MeshClient } from "@taskmesh/kit";

/** A config replica running in this process on a real Postgres, and a client for it. */
export interface ConfigReplica {
  readonly address: string;
  readonly client: MeshClient<typeof ConfigServiceService>;
  readonly server: MeshServer;
  /** Shuts the replica down (server, hub, pool) and closes the client. */
  stop(): Promise<void>;
}

/** Starts a config replica on `databaseUrl` (migrated), ready and SERVING, on 127.0.0.1:0. */
export async function startConfigReplica(databaseUrl: string, name = "config-test"): Promise<ConfigReplica> {
  const logger = createLogger({ level: "silent" });
  const pool = createPool({ url: databaseUrl, applicationName: name, logger, max: 5 });
  await migrate(pool, "config", migrations, logger);
  const store = new ConfigStore(pool);
  const hub = new WatchHub({ url: databaseUrl, store, logger, maxBackoffMs: 200 });
  const server = new MeshServer({ name, logger, shutdownGraceMs: 1000 })
    .addService(ConfigServiceService, configHandlers(store, hub))
    .onClose("pool", () => pool.end())
    .onClose("hub", () => hub.stop());
  const port = await server.listen("127.0.0.1:0");
  await hub.start();
  server.markServing();
  const address = `127.0.0.1:${port}`;
  const client = createClient(ConfigServiceService, address);
  return {
    address, client, server,
    async stop() {
      client.close();
      await server.shutdown();
    },
  };
}
