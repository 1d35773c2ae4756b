import { createLogger, createPool, loadEnv, runService } from "@taskmesh/kit";
import { AUDIT_TOPIC } from "./audit.js";
import { AuditRelay } from "./audit-relay.js";
import { buildIdentity } from "./build.js";
import { identityConfig, identityEnvShape } from "./config.js";

await runService({
  name: "identity",
  async start() {
    const env = loadEnv(identityEnvShape);
    const instance = env.TASKMESH_INSTANCE ?? "identity";
    const log = createLogger({ service: "identity", instance, level: env.LOG_LEVEL });
    const config = identityConfig({
      kek: env.TASKMESH_IDENTITY_KEK,
      issuer: env.TASKMESH_IDENTITY_ISSUER,
      audience: env.TASKMESH_IDENTITY_AUDIENCE,
      accessTtlMs: env.TASKMESH_IDENTITY_ACCESS_TTL,
      refreshTtlMs: env.TASKMESH_IDENTITY_REFRESH_TTL,
      familyTtlMs: env.TASKMESH_IDENTITY_FAMILY_TTL,
      jwksCacheMs: env.TASKMESH_IDENTITY_JWKS_CACHE,
      reuseGraceMs: env.TASKMESH_IDENTITY_REUSE_GRACE,
      keyRotationMs: env.TASKMESH_IDENTITY_KEY_ROTATION,
    });
    const pool = createPool({ url: env.DATABASE_URL, applicationName: instance, logger: log });
    const relay = env.KAFKA_BROKERS
      ? new AuditRelay({ databaseUrl: env.DATABASE_URL, brokers: env.KAFKA_BROKERS, topic: AUDIT_TOPIC, logger: log, name: `${instance}-audit-relay` })
      : undefined;
    if (!relay) log.warn("KAFKA_BROKERS is not set: the audit relay is off and audit rows stay unpublished");
    const identity = buildIdentity({
      name: "identity", logger: log, pool, config, shutdownGraceMs: env.TASKMESH_SHUTDOWN_GRACE,
      ...(relay ? { relay } : {}), ...(env.TASKMESH_BOOTSTRAP_KEY_FILE ? { bootstrapKeyFile: env.TASKMESH_BOOTSTRAP_KEY_FILE } : {}),
    });
    await identity.server.listen(env.TASKMESH_LISTEN);
    return { server: identity.server, log, ready: identity.ready };
  },
});
