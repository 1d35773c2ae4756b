import type pg from "pg";
import type { IdentityServiceService } from "@taskmesh/contracts/gen/taskmesh/identity/v1/identity";
import type { Logger, ServiceHandlers } from "@taskmesh/kit";
import { ApiKeyStore } from "./api-keys.js";
import type { IdentityConfig } from "./config.js";
import { identityHandlers } from "./handlers.js";
import { KeyScheduler } from "./key-scheduler.js";
import { Revoker } from "./revocation.js";
import { SigningKeys } from "./signing-keys.js";
import { TokenIssuer } from "./tokens.js";

/** The parts of one identity replica, wired over one pool. */
export interface Identity {
  readonly keys: SigningKeys;
  readonly scheduler: KeyScheduler;
  readonly handlers: ServiceHandlers<typeof IdentityServiceService>;
}

/** Wires the identity service over `pool` (nothing starts: call `keys.ensureActive()` and `scheduler.start()` when ready). */
export function createIdentity(options: { pool: pg.Pool; config: IdentityConfig; logger: Logger; onAudit?: () => void }): Identity {
  const { pool, config, logger } = options;
  const keys = new SigningKeys(pool, config, logger);
  const handlers = identityHandlers({
    pool, config, keys,
    tokens: new TokenIssuer(pool, keys, config),
    apiKeys: new ApiKeyStore(pool),
    revoker: new Revoker(pool, keys, config),
    ...(options.onAudit ? { onAudit: options.onAudit } : {}),
  });
  return { keys, scheduler: new KeyScheduler(keys, config.sweepIntervalMs, logger), handlers };
}
