import { ConfigServiceService } from "@taskmesh/contracts/gen/taskmesh/config/v1/config";
import { buildConfig } from "../../services/config/src/index.js";
import { MeshServer, createClient, createLogger, createPool, serveBuilt, type MeshClient } from "@taskmesh/kit";

/** A config replica running in this process on a real Postgres, and a client for it. */
export interface ConfigReplica {
  readonly address: string;
  readonly client: MeshClient<typeof ConfigServiceService>;
  readonly server: MeshServer;
  /** Shuts the replica down (server, hub, pool) and closes the client. */
  stop(): Promise<void>;
}

/** Starts a config replica on `databaseUrl` (migrated), ready and SERVING, on 127.0.0.1:0: built as the config service builds itself. */
export async function startConfigReplica(databaseUrl: string, name = "config-test"): Promise<ConfigReplica> {
  const logger = createLogger({ level: "silent" });
  const pool = createPool({ url: databaseUrl, applicationName: name, logger, max: 5 });
  const config = buildConfig({ name, logger, pool, databaseUrl, shutdownGraceMs: 1000, maxBackoffMs: 200 });
  const port = await serveBuilt(config, "127.0.0.1:0");
  const address = `127.0.0.1:${port}`;
  const client = createClient(ConfigServiceService, address);
  return {
    address, client, server: config.server,
    async stop() {
      client.close();
      await config.server.shutdown();
    },
  };
}
