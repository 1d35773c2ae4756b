import type pg from "pg";

/** An API key row (the secret's hash is never selected). */
export interface ApiKeyRow {
  readonly id: string;
  readonly name: string;
  readonly subject: string;
  readonly scopes: string[];
  readonly prefix: string;
  readonly created_at: Date;
  readonly created_by: string;
  readonly expires_at: Date | null;
  readonly last_used_at: Date | null;
  readonly revoked_at: Date | null;
  /** Computed: `expires_at` has passed (at the statement's time). */
  readonly expired: boolean;
}

const COLUMNS = `id, name, subject, scopes, prefix, created_at, created_by, expires_at, last_used_at, revoked_at,
                 (expires_at IS NOT NULL AND expires_at <= now()) AS expired`;

/** Statements on API keys. */
export const apiKeySql = {
  /** Releases the name of expired keys, so a new key may take it. */
  releaseExpiredName: {
    name: "identity-api-key-release-expired-name",
    text: `UPDATE identity.api_keys SET name_held = false WHERE name = $1 AND name_held AND expires_at <= now()`,
  },
  /** Inserts a key; nothing (no row) when an active key holds the name. */
  insert: {
    name: "identity-api-key-insert",
    text: `INSERT INTO identity.api_keys (id, name, subject, scopes, prefix, secret_hash, created_by, expires_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, now() + $8 * interval '1 millisecond')
           ON CONFLICT (name) WHERE name_held DO NOTHING
           RETURNING ${COLUMNS}`,
  },
  /** The key a secret belongs to (by its hash), locked for the issue. */
  byHash: {
    name: "identity-api-key-by-hash",
    text: `SELECT ${COLUMNS} FROM identity.api_keys WHERE secret_hash = $1 FOR UPDATE`,
  },
  byIdForUpdate: {
    name: "identity-api-key-by-id-for-update",
    text: `SELECT ${COLUMNS} FROM identity.api_keys WHERE id = $1 FOR UPDATE`,
  },
  /** The active key holding a name, locked. */
  activeByName: {
    name: "identity-api-key-active-by-name",
    text: `SELECT ${COLUMNS} FROM identity.api_keys
           WHERE name = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now()) FOR UPDATE`,
  },
  touch: {
    name: "identity-api-key-touch",
    text: `UPDATE identity.api_keys SET last_used_at = now() WHERE id = $1`,
  },
  revoke: {
    name: "identity-api-key-revoke",
    text: `UPDATE identity.api_keys SET revoked_at = now(), revoke_reason = $2, name_held = false
           WHERE id = $1 AND revoked_at IS NULL RETURNING ${COLUMNS}`,
  },
  /** A page of keys, newest first, before the id $1 (null: from the newest); $2 include inactive; $3 subject ('' any); $4 limit. */
  list: {
    name: "identity-api-key-list",
    text: `SELECT ${COLUMNS} FROM identity.api_keys
           WHERE ($1::uuid IS NULL OR id < $1::uuid)
             AND ($2 OR (revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())))
             AND ($3 = '' OR subject = $3)
           ORDER BY id DESC LIMIT $4`,
  },
} satisfies Record<string, pg.QueryConfig>;
