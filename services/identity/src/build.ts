import type pg from "pg";
import { IdentityServiceService } from "@taskmesh/contracts/gen/taskmesh/identity/v1/identity";
import { MeshServer, migrate, untilReady, type BuiltService, type Logger } from "@taskmesh/kit";
import type { AuditRelay } from "./audit-relay.js";
import { ensureBootstrapKey } from "./bootstrap.js";
import type { IdentityConfig } from "./config.js";
import { createIdentity, type Identity } from "./identity.js";
import { migrations } from "./sql/migrations.js";

/** What {@link buildIdentity} needs: made from the environment by main.ts, or by a test. */
export interface IdentityDeps {
  /** The server's name (logs, health). */
  readonly name: string;
  readonly logger: Logger;
  /** The pool over schema `identity`'s database; the service ends it when it shuts down. */
  readonly pool: pg.Pool;
  readonly config: IdentityConfig;
  readonly shutdownGraceMs: number;
  /** Publishes the audit log to Kafka; without it, audit rows stay unpublished. The service starts and stops it. */
  readonly relay?: AuditRelay;
  /** Where the first API key is written when there is none (TASKMESH_BOOTSTRAP_KEY_FILE). */
  readonly bootstrapKeyFile?: string;
  /** Run the key scheduler (rotation, sweeps) once ready. @default true */
  readonly scheduler?: boolean;
}

/** The identity service, built: its parts (signing keys, scheduler, handlers) beside the server. */
export interface IdentityService extends BuiltService {
  readonly identity: Identity;
}

/**
 * The identity service's wiring, the one place it is put together: for
 * main.ts and the tests alike. Ready once its migrations ran, a signing
 * key is active and the bootstrap key (if asked for) is written; then the
 * key scheduler and the audit relay start.
 */
export function buildIdentity(deps: IdentityDeps): IdentityService {
  const { pool, logger, relay } = deps;
  const identity = createIdentity({ pool, config: deps.config, logger, ...(relay ? { onAudit: () => relay.nudge() } : {}) });
  // Closers run in reverse order: the relay and the scheduler stop before the pool ends.
  const server = new MeshServer({ name: deps.name, logger, shutdownGraceMs: deps.shutdownGraceMs })
    .addService(IdentityServiceService, identity.handlers)
    .onClose("postgres pool", () => pool.end())
    .onClose("key scheduler", () => identity.scheduler.stop());
  if (relay) server.onClose("audit relay", () => relay.stop());
  return {
    server, identity,
    async ready(signal) {
      await untilReady("postgres (migrations)", () => migrate(pool, "identity", migrations, logger), signal, logger);
      await untilReady("signing key", () => identity.keys.ensureActive(signal), signal, logger);
      const file = deps.bootstrapKeyFile;
      if (file) await untilReady("bootstrap key", () => ensureBootstrapKey(pool, file, logger), signal, logger);
      if (deps.scheduler !== false) identity.scheduler.start();
      relay?.start();
    },
  };
}
