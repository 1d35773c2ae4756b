import type pg from "pg";

/** A signing key row without its private part. */
export interface SigningKeyRow {
  readonly kid: string;
  readonly state: "pending" | "active" | "retiring" | "retired";
  readonly alg: string;
  readonly public_jwk: { readonly kty: string; readonly n: string; readonly e: string };
  readonly created_at: Date;
  readonly activates_at: Date;
  readonly retired_at: Date | null;
  readonly removed_at: Date | null;
}

/** The key that signs now, with its sealed private part. */
export interface SignerRow {
  readonly kid: string;
  readonly private_key: Buffer;
}

const COLUMNS = "kid, state, alg, public_jwk, created_at, activates_at, retired_at, removed_at";

/** The transaction-level advisory lock (two-key form) that serializes rotations, activations and retirements across replicas. */
const LOCK = "hashtext('taskmesh:identity'), hashtext('signing-keys')";

/**
 * Statements on the signing keys. Times are the database's, taken when each
 * statement starts (`statement_timestamp()`), never when its transaction
 * began (`now()`): a rotation that waited for the lock must stamp its key
 * after the rotation it waited for, or that one's key would stay active
 * beside it.
 */
export const signingKeySql = {
  lock: `SELECT pg_advisory_xact_lock(${LOCK})`,
  tryLock: `SELECT pg_try_advisory_xact_lock(${LOCK}) AS locked`,
  /** Waits at most $1 ms for the lock in this transaction (Postgres answers 55P03 lock_not_available after that). */
  lockWaitLimit: `SELECT set_config('lock_timeout', $1 || 'ms', true)`,
  insert: {
    name: "identity-signing-key-insert",
    text: `INSERT INTO identity.signing_keys (kid, state, public_jwk, private_key, created_at, activates_at)
           VALUES ($1, $2, $3, $4, statement_timestamp(), statement_timestamp() + $5 * interval '1 millisecond') RETURNING ${COLUMNS}`,
  },
  /** The key that signs now: the latest whose activation time has come (its state may lag until the next sweep). */
  signer: {
    name: "identity-signing-key-signer",
    text: `SELECT kid, private_key FROM identity.signing_keys
           WHERE state IN ('pending', 'active') AND activates_at <= statement_timestamp()
           ORDER BY activates_at DESC, created_at DESC LIMIT 1`,
  },
  /** The keys in the JWKS: the signer first, then the others, latest activation first. */
  published: {
    name: "identity-signing-key-published",
    text: `SELECT ${COLUMNS} FROM identity.signing_keys
           WHERE state <> 'retired' AND (removed_at IS NULL OR removed_at > statement_timestamp())
           ORDER BY (state IN ('pending', 'active') AND activates_at <= statement_timestamp()) DESC, activates_at DESC, created_at DESC`,
  },
  /** Every key not RETIRED, newest first. */
  unretired: {
    name: "identity-signing-key-unretired",
    text: `SELECT ${COLUMNS} FROM identity.signing_keys WHERE state <> 'retired' ORDER BY created_at DESC, kid`,
  },
  /** Whether a scheduled rotation is due: the newest signing (or about to sign) key is older than $1 ms; and how many there are. */
  newest: {
    name: "identity-signing-key-newest",
    text: `SELECT max(created_at) AS created_at, max(created_at) <= statement_timestamp() - $1 * interval '1 millisecond' AS due,
                  count(*)::int AS keys
           FROM identity.signing_keys WHERE state IN ('pending', 'active')`,
  },
  /** The pending key due to sign (the latest due one), if any. */
  duePending: {
    name: "identity-signing-key-due-pending",
    text: `SELECT ${COLUMNS} FROM identity.signing_keys WHERE state = 'pending' AND activates_at <= statement_timestamp()
           ORDER BY activates_at DESC, created_at DESC LIMIT 1`,
  },
  /** Retires every key that signed before $1 (the newly active key, activated at $2): RETIRING until its last token ($3 ms) expired. */
  retireSigners: {
    name: "identity-signing-key-retire-signers",
    text: `UPDATE identity.signing_keys SET state = 'retiring', retired_at = $2, removed_at = $2 + $3 * interval '1 millisecond'
           WHERE state IN ('active', 'pending') AND kid <> $1 AND activates_at <= $2 RETURNING kid`,
  },
  activate: {
    name: "identity-signing-key-activate",
    text: `UPDATE identity.signing_keys SET state = 'active' WHERE kid = $1 RETURNING ${COLUMNS}`,
  },
  /** Pending keys that never signed, superseded by a new rotation: straight to RETIRED. */
  dropPending: {
    name: "identity-signing-key-drop-pending",
    text: `UPDATE identity.signing_keys SET state = 'retired', retired_at = statement_timestamp(), removed_at = statement_timestamp()
           WHERE state = 'pending' AND activates_at > statement_timestamp() RETURNING kid`,
  },
  /** RETIRING keys whose last token has expired leave the JWKS. */
  removeExpired: {
    name: "identity-signing-key-remove-expired",
    text: `UPDATE identity.signing_keys SET state = 'retired' WHERE state = 'retiring' AND removed_at <= statement_timestamp() RETURNING kid`,
  },
} satisfies Record<string, string | pg.QueryConfig>;
