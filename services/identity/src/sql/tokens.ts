import type pg from "pg";

/** A refresh token with its family and the family's API key, as a refresh reads them. */
export interface RefreshRow {
  readonly token_id: string;
  readonly token_expired: boolean;
  readonly retired_at: Date | null;
  /** Computed: ms since the token was retired (null while it is current). */
  readonly retired_ms: number | null;
  readonly family_id: string;
  readonly subject: string;
  readonly scopes: string[];
  readonly api_key_id: string;
  readonly family_revoked: boolean;
  readonly family_expires_at: Date;
  readonly family_expired: boolean;
  readonly key_usable: boolean;
}

/** A token family. */
export interface FamilyRow {
  readonly id: string;
  readonly api_key_id: string;
  readonly subject: string;
  readonly scopes: string[];
  readonly expires_at: Date;
  readonly revoked_at: Date | null;
}

/** Statements on token families and refresh tokens. */
export const tokenSql = {
  insertFamily: {
    name: "identity-family-insert",
    text: `INSERT INTO identity.families (id, api_key_id, subject, scopes, expires_at)
           VALUES ($1, $2, $3, $4, now() + $5 * interval '1 millisecond') RETURNING id, api_key_id, subject, scopes, expires_at, revoked_at`,
  },
  /** A refresh token, expiring after $4 ms or with its family, whichever comes first. */
  insertRefresh: {
    name: "identity-refresh-insert",
    text: `INSERT INTO identity.refresh_tokens (id, family_id, token_hash, expires_at)
           SELECT $1, $2, $3, LEAST(now() + $4 * interval '1 millisecond', f.expires_at) FROM identity.families f WHERE f.id = $2
           RETURNING expires_at`,
  },
  /** A refresh token by its hash, with its family (both locked: one rotation at a time per family). */
  byHash: {
    name: "identity-refresh-by-hash",
    text: `SELECT t.id AS token_id, t.expires_at <= now() AS token_expired, t.retired_at,
                  (EXTRACT(EPOCH FROM (now() - t.retired_at)) * 1000)::float8 AS retired_ms,
                  f.id AS family_id, f.subject, f.scopes, f.api_key_id, f.revoked_at IS NOT NULL AS family_revoked,
                  f.expires_at AS family_expires_at, f.expires_at <= now() AS family_expired,
                  (k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now())) AS key_usable
           FROM identity.refresh_tokens t
           JOIN identity.families f ON f.id = t.family_id
           JOIN identity.api_keys k ON k.id = f.api_key_id
           WHERE t.token_hash = $1
           FOR UPDATE OF t, f`,
  },
  familyOfRefresh: {
    name: "identity-refresh-family",
    text: `SELECT family_id FROM identity.refresh_tokens WHERE token_hash = $1 AND expires_at > now()`,
  },
  retire: {
    name: "identity-refresh-retire",
    text: `UPDATE identity.refresh_tokens SET retired_at = now(), successor_id = $2 WHERE id = $1`,
  },
  familyById: {
    name: "identity-family-by-id",
    text: `SELECT id, api_key_id, subject, scopes, expires_at, revoked_at FROM identity.families WHERE id = $1`,
  },
  /** Revokes one family; returns it when it was active. */
  revokeFamily: {
    name: "identity-family-revoke",
    text: `UPDATE identity.families SET revoked_at = now(), revoke_reason = $2
           WHERE id = $1 AND revoked_at IS NULL RETURNING id, subject, api_key_id`,
  },
  revokeSubject: {
    name: "identity-family-revoke-subject",
    text: `UPDATE identity.families SET revoked_at = now(), revoke_reason = $2
           WHERE subject = $1 AND revoked_at IS NULL RETURNING id`,
  },
  revokeApiKey: {
    name: "identity-family-revoke-api-key",
    text: `UPDATE identity.families SET revoked_at = now(), revoke_reason = $2
           WHERE api_key_id = $1 AND revoked_at IS NULL RETURNING id`,
  },
} satisfies Record<string, pg.QueryConfig>;
