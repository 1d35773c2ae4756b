import type pg from "pg";
import { Code, MeshError, isUuid, query, withTransaction, type Principal } from "@taskmesh/kit";
import { verifyAccessToken } from "./access-token.js";
import { AuditAction, AuditOutcome, writeAudit, type RequestOrigin } from "./audit.js";
import type { IdentityConfig } from "./config.js";
import { ok, refuse, unwrap } from "./outcome.js";
import { hashSecret, looksLike } from "./secrets.js";
import { tokenSql, type FamilyRow } from "./sql/tokens.js";
import { toJwk, type SigningKeys } from "./signing-keys.js";

/** What to revoke. */
export type RevokeTarget =
  | { readonly kind: "token"; readonly token: string }
  | { readonly kind: "family"; readonly familyId: string }
  | { readonly kind: "subject"; readonly subject: string };

const { AUDIT_ACTION_TOKEN_REVOKED: REVOKED } = AuditAction;
const { AUDIT_OUTCOME_SUCCESS: SUCCESS, AUDIT_OUTCOME_DENIED: DENIED } = AuditOutcome;

/**
 * Revocation of token families: by a token of the family (holding it is
 * proof enough), by family id or by subject (`admin`, or the caller's own).
 * A revoked family can no longer be refreshed; its access tokens live until
 * they expire.
 */
export class Revoker {
  readonly #pool: pg.Pool;
  readonly #keys: SigningKeys;
  readonly #config: IdentityConfig;

  constructor(pool: pg.Pool, keys: SigningKeys, config: IdentityConfig) {
    this.#pool = pool;
    this.#keys = keys;
    this.#config = config;
  }

  /**
   * Revokes what `target` names on behalf of `principal` (undefined when the
   * caller is unknown: enough for a token target); returns how many families
   * were newly revoked. An unknown or expired token revokes nothing.
   */
  async revoke(target: RevokeTarget, reason: string, principal: Principal | undefined, origin: RequestOrigin, signal: AbortSignal): Promise<number> {
    const familyId = target.kind === "token" ? await this.#familyOf(target.token, signal) : target.kind === "family" ? target.familyId : undefined;
    const actor = principal?.subject ?? "";
    const outcome = await withTransaction(this.#pool, async (client) => {
      if (target.kind === "subject") {
        if (!this.#mayActFor(principal, target.subject)) return this.#deny(client, origin, actor, { subject: target.subject });
        const { rows } = await client.query<{ id: string }>(tokenSql.revokeSubject, [target.subject, reason || "revoked by subject"]);
        await writeAudit(client, origin, { action: REVOKED, outcome: SUCCESS, actor, subject: target.subject, reason, details: { revokedFamilies: rows.length, by: "subject" } });
        return ok(rows.length);
      }
      const family = familyId === undefined ? undefined : (await client.query<FamilyRow>(tokenSql.familyById, [familyId])).rows[0];
      if (family && target.kind === "family" && !this.#mayActFor(principal, family.subject)) {
        return this.#deny(client, origin, actor, { subject: family.subject, familyId: family.id });
      }
      const { rows } = family ? await client.query(tokenSql.revokeFamily, [family.id, reason || `revoked by ${target.kind}`]) : { rows: [] };
      await writeAudit(client, origin, {
        action: REVOKED, outcome: SUCCESS, actor, subject: family?.subject, apiKeyId: family?.api_key_id, familyId: family?.id, reason,
        details: { revokedFamilies: rows.length, by: target.kind },
      });
      return ok(rows.length);
    }, { signal });
    return unwrap(outcome);
  }

  /** `admin`, or acting on its own subject. */
  #mayActFor(principal: Principal | undefined, subject: string): boolean {
    return principal !== undefined && (principal.scopes.has("admin") || principal.subject === subject);
  }

  async #deny(client: pg.PoolClient, origin: RequestOrigin, actor: string, about: { subject: string; familyId?: string }) {
    await writeAudit(client, origin, { action: REVOKED, outcome: DENIED, actor, ...about, reason: "AUTH_MISSING_SCOPE" });
    return refuse<number>(new MeshError({
      code: Code.PERMISSION_DENIED, reason: "AUTH_MISSING_SCOPE", message: "revoking another subject's tokens needs the admin scope", metadata: { scope: "admin" },
    }));
  }

  /** The family of a refresh token or of a valid access token this service signed; undefined for anything else. */
  async #familyOf(token: string, signal: AbortSignal): Promise<string | undefined> {
    if (looksLike("refreshToken", token)) {
      const { rows } = await query<{ family_id: string }>(this.#pool, tokenSql.familyOfRefresh, [hashSecret(token)], signal);
      return rows[0]?.family_id;
    }
    if (token.split(".").length !== 3 || token.length > 8192) return undefined;
    const keys = (await this.#keys.published(signal)).map(toJwk);
    const claims = await verifyAccessToken(token, keys, this.#config);
    return typeof claims?.fam === "string" && isUuid(claims.fam) ? claims.fam : undefined;
  }
}
