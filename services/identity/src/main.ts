import { IdentityServiceService } from "@taskmesh/contracts/gen/taskmesh/identity/v1/identity";
import { MeshServer, createLogger, createPool, loadEnv, migrate, runService, untilReady } from "@taskmesh/kit";
import { AUDIT_TOPIC } from "./audit.js";
import { AuditRelay } from "./audit-relay.js";
import { ensureBootstrapKey } from "./bootstrap.js";
import { identityConfig, identityEnvShape } from "./config.js";
import { createIdentity } from "./identity.js";
import { migrations } from "./sql/migrations.js";

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
    const identity = createIdentity({ pool, config, logger: log, ...(relay ? { onAudit: () => relay.nudge() } : {}) });
    const server = new MeshServer({ name: "identity", logger: log, shutdownGraceMs: env.TASKMESH_SHUTDOWN_GRACE })
      .addService(IdentityServiceService, identity.handlers)
      .onClose("postgres pool", () => pool.end())
      .onClose("key scheduler", () => identity.scheduler.stop());
    // Closers run in reverse order: the relay and the scheduler stop before the pool ends.
    if (relay) server.onClose("audit relay", () => relay.stop());
    else log.warn("KAFKA_BROKERS is not set: the audit relay is off and audit rows stay unpublished");
    await server.listen(env.TASKMESH_LISTEN);
    return {
      server,
      log,
      async ready(signal) {
        await untilReady("postgres (migrations)", () => migrate(pool, "identity", migrations, log), signal, log);
        await untilReady("signing key", () => identity.keys.ensureActive(signal), signal, log);
        const file = env.TASKMESH_BOOTSTRAP_KEY_FILE;
        if (file) await untilReady("bootstrap key", () => ensureBootstrapKey(pool, file, log), signal, log);
        identity.scheduler.start();
        relay?.start();
      },
    };
  },
});
