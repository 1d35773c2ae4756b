import type pg from "pg";
import { Code, MeshError, exhausted, query, uuidv7, withTransaction } from "@taskmesh/kit";
import { signAccessToken, type SignedAccessToken } from "./access-token.js";
import { AuditAction, AuditOutcome, writeAudit, type RequestOrigin } from "./audit.js";
import type { IdentityConfig } from "./config.js";
import { ok, refuse, unwrap } from "./outcome.js";
import { hashSecret, newSecret } from "./secrets.js";
import { apiKeySql, type ApiKeyRow } from "./sql/api-keys.js";
import { auditSql } from "./sql/audit.js";
import { tokenSql, type FamilyRow, type RefreshRow } from "./sql/tokens.js";
import type { SigningKeys } from "./signing-keys.js";
import { grantScopes } from "./validation.js";

/** A new token pair. */
export interface TokenPair {
  readonly access: SignedAccessToken;
  readonly refreshToken: string;
  readonly refreshExpiresAt: Date;
  readonly scopes: readonly string[];
  readonly familyId: string;
}

const { AUDIT_ACTION_TOKEN_ISSUED: ISSUED, AUDIT_ACTION_TOKEN_REFRESHED: REFRESHED, AUDIT_ACTION_REFRESH_TOKEN_REUSED: REUSED } = AuditAction;
const { AUDIT_OUTCOME_SUCCESS: SUCCESS, AUDIT_OUTCOME_DENIED: DENIED } = AuditOutcome;

const unauthenticated = (reason: "AUTH_INVALID_API_KEY" | "AUTH_INVALID_REFRESH_TOKEN" | "AUTH_REFRESH_TOKEN_REUSED", message: string) =>
  new MeshError({ code: Code.UNAUTHENTICATED, reason, message });

const notGranted = (message: string) => new MeshError({ code: Code.PERMISSION_DENIED, reason: "AUTH_SCOPE_NOT_GRANTED", message });

/**
 * Token issue and refresh: an API key buys a token family (an access token
 * and a rotating refresh token); each refresh retires the refresh token it
 * was given, and a retired one presented again revokes its family. Every
 * outcome, refusals included, is audited in the same transaction.
 */
export class TokenIssuer {
  readonly #pool: pg.Pool;
  readonly #keys: SigningKeys;
  readonly #config: IdentityConfig;

  constructor(pool: pg.Pool, keys: SigningKeys, config: IdentityConfig) {
    this.#pool = pool;
    this.#keys = keys;
    this.#config = config;
  }

  /** Exchanges an API key's secret for a new token family. */
  async issue(secret: string, requested: readonly string[], origin: RequestOrigin, signal: AbortSignal): Promise<TokenPair> {
    await this.#throttle(origin, signal);
    const signer = await this.#keys.signer(signal);
    const outcome = await withTransaction(this.#pool, async (client) => {
      const { rows } = await client.query<ApiKeyRow>(apiKeySql.byHash, [hashSecret(secret)]);
      const key = rows[0];
      if (!key || key.revoked_at !== null || key.expired) {
        // The same answer for an unknown, revoked or expired key: keys cannot be probed.
        await writeAudit(client, origin, { action: ISSUED, outcome: DENIED, reason: "AUTH_INVALID_API_KEY", apiKeyId: key?.id, subject: key?.subject });
        return refuse<TokenPair>(unauthenticated("AUTH_INVALID_API_KEY", "the API key is unknown, revoked or expired"));
      }
      const actor = `apikey:${key.id}`;
      const scopes = grantScopes(key.scopes, requested);
      if (!scopes) {
        await writeAudit(client, origin, { action: ISSUED, outcome: DENIED, reason: "AUTH_SCOPE_NOT_GRANTED", actor, apiKeyId: key.id, subject: key.subject, details: { requested: [...requested] } });
        return refuse<TokenPair>(notGranted(`the API key grants only: ${key.scopes.join(", ")}`));
      }
      const { rows: families } = await client.query<FamilyRow>(tokenSql.insertFamily, [uuidv7(), key.id, key.subject, scopes, this.#config.familyTtlMs]);
      const family = families[0]!;
      const { refreshToken, refreshExpiresAt } = await this.#newRefreshToken(client, family.id);
      await client.query(apiKeySql.touch, [key.id]);
      const access = await signAccessToken(signer, { subject: key.subject, scopes, familyId: family.id, apiKeyId: key.id }, this.#config);
      await writeAudit(client, origin, { action: ISSUED, outcome: SUCCESS, actor, apiKeyId: key.id, subject: key.subject, familyId: family.id, kid: signer.kid, details: { scopes } });
      return ok<TokenPair>({ access, refreshToken, refreshExpiresAt, scopes, familyId: family.id });
    }, { signal });
    return unwrap(outcome);
  }

  /**
   * Rotates a refresh token. A retired one presented again revokes its
   * family (AUTH_REFRESH_TOKEN_REUSED) — except within the reuse grace after
   * its rotation, where it is refused (AUTH_INVALID_REFRESH_TOKEN) and the
   * family left alone: a client retrying a request whose answer it lost
   * keeps its session if it got the successor, and cannot mint a second one.
   */
  async refresh(token: string, requested: readonly string[], origin: RequestOrigin, signal: AbortSignal): Promise<TokenPair> {
    const signer = await this.#keys.signer(signal);
    const outcome = await withTransaction(this.#pool, async (client) => {
      const { rows } = await client.query<RefreshRow>(tokenSql.byHash, [hashSecret(token)]);
      const row = rows[0];
      const invalid = () => unauthenticated("AUTH_INVALID_REFRESH_TOKEN", "the refresh token is unknown, expired or revoked");
      if (!row) {
        await writeAudit(client, origin, { action: REFRESHED, outcome: DENIED, reason: "AUTH_INVALID_REFRESH_TOKEN" });
        return refuse<TokenPair>(invalid());
      }
      const about = { subject: row.subject, apiKeyId: row.api_key_id, familyId: row.family_id, actor: row.subject };
      if (row.retired_at !== null) {
        if ((row.retired_ms ?? 0) < this.#config.reuseGraceMs) {
          await writeAudit(client, origin, { ...about, action: REFRESHED, outcome: DENIED, reason: "AUTH_INVALID_REFRESH_TOKEN", details: { retriedWithinGrace: true } });
          return refuse<TokenPair>(invalid());
        }
        const { rowCount } = await client.query(tokenSql.revokeFamily, [row.family_id, "refresh token reused"]);
        await writeAudit(client, origin, { ...about, action: REUSED, outcome: DENIED, reason: "AUTH_REFRESH_TOKEN_REUSED", details: { revokedFamilies: rowCount ?? 0 } });
        return refuse<TokenPair>(unauthenticated("AUTH_REFRESH_TOKEN_REUSED", "this refresh token was already used; its token family is revoked"));
      }
      if (row.token_expired || row.family_revoked || row.family_expired || !row.key_usable) {
        await writeAudit(client, origin, { ...about, action: REFRESHED, outcome: DENIED, reason: "AUTH_INVALID_REFRESH_TOKEN" });
        return refuse<TokenPair>(invalid());
      }
      const scopes = grantScopes(row.scopes, requested);
      if (!scopes) {
        await writeAudit(client, origin, { ...about, action: REFRESHED, outcome: DENIED, reason: "AUTH_SCOPE_NOT_GRANTED", details: { requested: [...requested] } });
        return refuse<TokenPair>(notGranted(`the token family grants only: ${row.scopes.join(", ")}`));
      }
      const { refreshToken, refreshExpiresAt, id } = await this.#newRefreshToken(client, row.family_id);
      await client.query(tokenSql.retire, [row.token_id, id]);
      const access = await signAccessToken(signer, { subject: row.subject, scopes, familyId: row.family_id, apiKeyId: row.api_key_id }, this.#config);
      await writeAudit(client, origin, { ...about, action: REFRESHED, outcome: SUCCESS, kid: signer.kid, details: { scopes } });
      return ok<TokenPair>({ access, refreshToken, refreshExpiresAt, scopes, familyId: row.family_id });
    }, { signal });
    return unwrap(outcome);
  }

  /** RESOURCE_EXHAUSTED (RATE_TOO_MANY_FAILURES) after too many failed issues from the caller's address; callers without one (not through the edge) are not counted. */
  async #throttle(origin: RequestOrigin, signal: AbortSignal): Promise<void> {
    if (origin.clientIp === "") return;
    const { failureLimit, failureWindowMs } = this.#config;
    const { rows } = await query<{ failures: number; retry_ms: string | null }>(this.#pool, auditSql.recentFailures, [origin.clientIp, ISSUED, failureWindowMs], signal);
    const { failures, retry_ms } = rows[0]!;
    if (failures < failureLimit) return;
    const error = exhausted("RATE_TOO_MANY_FAILURES", "too many failed token requests from this address; retry later", Math.max(1000, Number(retry_ms ?? failureWindowMs)));
    await writeAudit(this.#pool, origin, { action: ISSUED, outcome: DENIED, reason: "RATE_TOO_MANY_FAILURES" }).catch(() => undefined);
    throw error;
  }

  async #newRefreshToken(client: pg.PoolClient, familyId: string): Promise<{ id: string; refreshToken: string; refreshExpiresAt: Date }> {
    const id = uuidv7();
    const refreshToken = newSecret("refreshToken");
    const { rows } = await client.query<{ expires_at: Date }>(tokenSql.insertRefresh, [id, familyId, hashSecret(refreshToken), this.#config.refreshTtlMs]);
    return { id, refreshToken, refreshExpiresAt: rows[0]!.expires_at };
  }
}
