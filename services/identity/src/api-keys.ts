import type pg from "pg";
import { ApiKeyState, type ApiKey } from "@taskmesh/contracts/gen/taskmesh/identity/v1/identity";
import { Code, MeshError, notFound, uuidv7, withTransaction } from "@taskmesh/kit";
import { AuditAction, AuditOutcome, writeAudit, type RequestOrigin } from "./audit.js";
import { ok, refuse, unwrap } from "./outcome.js";
import { hashSecret, newSecret, secretPrefix } from "./secrets.js";
import { apiKeySql, type ApiKeyRow } from "./sql/api-keys.js";
import { tokenSql } from "./sql/tokens.js";
import type { NewApiKey } from "./validation.js";

/** The wire form of an API key row (never its secret). */
export function toApiKey(row: ApiKeyRow): ApiKey {
  const state = row.revoked_at !== null ? ApiKeyState.API_KEY_STATE_REVOKED : row.expired ? ApiKeyState.API_KEY_STATE_EXPIRED : ApiKeyState.API_KEY_STATE_ACTIVE;
  return {
    id: row.id, name: row.name, subject: row.subject, scopes: row.scopes, prefix: row.prefix, state, createdAt: row.created_at, createdBy: row.created_by,
    expiresAt: row.expires_at ?? undefined, lastUsedAt: row.last_used_at ?? undefined, revokedAt: row.revoked_at ?? undefined,
  };
}

/** A created key and its secret (shown once). */
export interface CreatedApiKey {
  readonly row: ApiKeyRow;
  readonly secret: string;
}

const { AUDIT_ACTION_API_KEY_CREATED: CREATED, AUDIT_ACTION_API_KEY_REVOKED: REVOKED } = AuditAction;
const { AUDIT_OUTCOME_SUCCESS: SUCCESS, AUDIT_OUTCOME_DENIED: DENIED } = AuditOutcome;

/** Creates an API key in the caller's transaction (audited); undefined when an active key holds the name. */
export async function insertApiKey(client: pg.PoolClient, key: NewApiKey, createdBy: string, origin: RequestOrigin | undefined): Promise<CreatedApiKey | undefined> {
  const id = uuidv7();
  const secret = newSecret("apiKey");
  await client.query(apiKeySql.releaseExpiredName, [key.name]);
  const { rows } = await client.query<ApiKeyRow>(apiKeySql.insert, [
    id, key.name, key.subject || `apikey:${id}`, key.scopes, secretPrefix(secret), hashSecret(secret), createdBy, key.ttlMs ?? null,
  ]);
  const row = rows[0];
  if (!row) return undefined;
  await writeAudit(client, origin, {
    action: CREATED, outcome: SUCCESS, actor: createdBy, subject: row.subject, apiKeyId: row.id, details: { name: row.name, scopes: row.scopes },
  });
  return { row, secret };
}

/** Revokes an API key and its token families in the caller's transaction (audited); the key unchanged when already revoked. */
export async function revokeApiKeyIn(client: pg.PoolClient, id: string, reason: string, actor: string, origin: RequestOrigin | undefined): Promise<{ row: ApiKeyRow; revokedFamilies: number } | undefined> {
  const { rows } = await client.query<ApiKeyRow>(apiKeySql.byIdForUpdate, [id]);
  const current = rows[0];
  if (!current) return undefined;
  if (current.revoked_at !== null) return { row: current, revokedFamilies: 0 };
  const { rows: revoked } = await client.query<ApiKeyRow>(apiKeySql.revoke, [id, reason || null]);
  const { rows: families } = await client.query(tokenSql.revokeApiKey, [id, reason || "API key revoked"]);
  await writeAudit(client, origin, {
    action: REVOKED, outcome: SUCCESS, actor, subject: current.subject, apiKeyId: id, reason, details: { revokedFamilies: families.length },
  });
  return { row: revoked[0]!, revokedFamilies: families.length };
}

/** API keys: creation (the secret shown once, only its hash stored), listing, revocation. */
export class ApiKeyStore {
  readonly #pool: pg.Pool;

  constructor(pool: pg.Pool) {
    this.#pool = pool;
  }

  /** Creates a key; ALREADY_EXISTS (RES_API_KEY_NAME_TAKEN) when an active key has the name (audited as DENIED). */
  async create(key: NewApiKey, createdBy: string, origin: RequestOrigin, signal: AbortSignal): Promise<CreatedApiKey> {
    const outcome = await withTransaction(this.#pool, async (client) => {
      const created = await insertApiKey(client, key, createdBy, origin);
      if (created) return ok(created);
      await writeAudit(client, origin, { action: CREATED, outcome: DENIED, actor: createdBy, reason: "RES_API_KEY_NAME_TAKEN", details: { name: key.name } });
      return refuse<CreatedApiKey>(new MeshError({
        code: Code.ALREADY_EXISTS, reason: "RES_API_KEY_NAME_TAKEN", message: `an active API key is named ${key.name}`, metadata: { name: key.name },
      }));
    }, { signal });
    return unwrap(outcome);
  }

  /** A page of keys, newest first, before `beforeId`. */
  async list(filter: { beforeId: string | undefined; includeInactive: boolean; subject: string; limit: number }, signal: AbortSignal): Promise<ApiKeyRow[]> {
    return withTransaction(this.#pool, async (client) =>
      (await client.query<ApiKeyRow>(apiKeySql.list, [filter.beforeId ?? null, filter.includeInactive, filter.subject, filter.limit])).rows,
    { signal, readOnly: true });
  }

  /** Revokes a key and every family issued from it; NOT_FOUND (RES_API_KEY_NOT_FOUND) for an unknown id. */
  async revoke(id: string, reason: string, actor: string, origin: RequestOrigin, signal: AbortSignal): Promise<{ row: ApiKeyRow; revokedFamilies: number }> {
    const result = await withTransaction(this.#pool, (client) => revokeApiKeyIn(client, id, reason, actor, origin), { signal });
    if (!result) throw notFound("RES_API_KEY_NOT_FOUND", `no API key has id ${id}`, { id });
    return result;
  }
}
