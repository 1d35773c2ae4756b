import { createPrivateKey, generateKeyPair, type KeyObject } from "node:crypto";
import { promisify } from "node:util";
import { calculateJwkThumbprint } from "jose";
import type pg from "pg";
import { SigningKeyState, type Jwk, type SigningKey } from "@taskmesh/contracts/gen/taskmesh/identity/v1/identity";
import { Code, MeshError, query, withTransaction, type Logger } from "@taskmesh/kit";
import { AuditAction, AuditOutcome, writeAudit, type RequestOrigin } from "./audit.js";
import type { IdentityConfig } from "./config.js";
import { openPrivateKey, sealPrivateKey } from "./kek.js";
import { signingKeySql, type SignerRow, type SigningKeyRow } from "./sql/signing-keys.js";

const generateRsa = promisify(generateKeyPair);

/** How long a rotation waits for the signing-key lock before it answers RES_CONCURRENT_ROTATION. */
const ROTATION_LOCK_WAIT_MS = 2000;

/** The signing algorithm and key size of every signing key. */
export const SIGNING = { alg: "RS256", modulusLength: 2048 } as const;

/** The key that signs access tokens now. */
export interface Signer {
  readonly kid: string;
  readonly key: KeyObject;
}

/** A freshly generated key pair, ready to be stored. */
interface NewKey {
  readonly kid: string;
  readonly jwk: { kty: string; n: string; e: string };
  readonly sealed: Buffer;
}

const STATES: Record<SigningKeyRow["state"], SigningKeyState> = {
  pending: SigningKeyState.SIGNING_KEY_STATE_PENDING,
  active: SigningKeyState.SIGNING_KEY_STATE_ACTIVE,
  retiring: SigningKeyState.SIGNING_KEY_STATE_RETIRING,
  retired: SigningKeyState.SIGNING_KEY_STATE_RETIRED,
};

/** The wire form of a signing key row (never its private part). */
export function toSigningKey(row: SigningKeyRow): SigningKey {
  return {
    kid: row.kid, state: STATES[row.state], alg: row.alg, createdAt: row.created_at, activatesAt: row.activates_at,
    retiredAt: row.retired_at ?? undefined, removedAt: row.removed_at ?? undefined,
  };
}

/** The JWK of a signing key row. */
export function toJwk(row: SigningKeyRow): Jwk {
  return { kty: "RSA", kid: row.kid, use: "sig", alg: row.alg, n: row.public_jwk.n, e: row.public_jwk.e };
}

/**
 * The RS256 signing keys and their life cycle: PENDING (published, not
 * signing) → ACTIVE (signing; one at a time) → RETIRING (published until
 * its last token expired, `retired_at` + access TTL) → RETIRED. The key that
 * signs is chosen by time (the latest whose activation came), so a due
 * activation takes effect even before a sweep records it. Every change runs
 * under one advisory lock, so replicas never rotate or activate twice.
 */
export class SigningKeys {
  readonly #pool: pg.Pool;
  readonly #config: IdentityConfig;
  readonly #log: Logger;
  readonly #opened = new Map<string, KeyObject>();

  constructor(pool: pg.Pool, config: IdentityConfig, log: Logger) {
    this.#pool = pool;
    this.#config = config;
    this.#log = log;
  }

  /** Creates an ACTIVE key when there is none that signs or will (first start); safe when replicas start together. */
  async ensureActive(signal?: AbortSignal): Promise<void> {
    const { rows } = await this.#pool.query<{ keys: number }>(signingKeySql.newest, [this.#config.keyRotationMs]);
    if (rows[0]!.keys > 0) return;
    const key = await this.#generate();
    await withTransaction(this.#pool, async (client) => {
      await client.query(signingKeySql.lock);
      const { rows: again } = await client.query<{ keys: number }>(signingKeySql.newest, [this.#config.keyRotationMs]);
      if (again[0]!.keys > 0) return;
      await this.#insert(client, key, 0, "identity", undefined);
      await this.#activateDue(client, "identity", undefined);
      this.#log.info({ kid: key.kid }, "first signing key created");
    }, signal ? { signal } : {});
  }

  /**
   * Creates a new signing key, published at once and signing after
   * `activationDelayMs` (0: now); a pending key that never signed is dropped.
   * Waits up to ROTATION_LOCK_WAIT_MS for the lock (a sweep holds it for
   * milliseconds); ABORTED (RES_CONCURRENT_ROTATION) when it is still held.
   */
  async rotate(activationDelayMs: number, actor: string, origin: RequestOrigin | undefined, signal?: AbortSignal): Promise<{ newKey: SigningKeyRow; keys: SigningKeyRow[] }> {
    const key = await this.#generate();
    return withTransaction(this.#pool, async (client) => {
      // A sweep holds the lock for milliseconds: wait it out rather than fail the operator's call.
      await client.query(signingKeySql.lockWaitLimit, [String(ROTATION_LOCK_WAIT_MS)]);
      try {
        await client.query(signingKeySql.lock);
      } catch (e) {
        if ((e as { code?: string }).code !== "55P03") throw e;
        throw new MeshError({ code: Code.ABORTED, reason: "RES_CONCURRENT_ROTATION", message: "another signing key rotation is committing; retry", retryAfterMs: 1000 });
      }
      await this.#activateDue(client, actor, origin);
      await this.#removeExpired(client, actor, origin);
      await client.query(signingKeySql.dropPending);
      let newKey = await this.#insert(client, key, activationDelayMs, actor, origin);
      if (activationDelayMs === 0) newKey = (await this.#activateDue(client, actor, origin)) ?? newKey;
      const { rows } = await client.query<SigningKeyRow>(signingKeySql.unretired);
      return { newKey, keys: rows };
    }, signal ? { signal } : {});
  }

  /**
   * Records due activations and retirements and rotates when the newest key
   * is older than the rotation interval. Skips when another replica holds the
   * lock (it does the same work).
   */
  async sweep(): Promise<void> {
    const { rows } = await this.#pool.query<{ due: boolean | null }>(signingKeySql.newest, [this.#config.keyRotationMs]);
    const key = rows[0]!.due ? await this.#generate() : undefined;
    await withTransaction(this.#pool, async (client) => {
      const { rows: lock } = await client.query<{ locked: boolean }>(signingKeySql.tryLock);
      if (!lock[0]!.locked) return;
      await this.#activateDue(client, "identity", undefined);
      await this.#removeExpired(client, "identity", undefined);
      if (!key) return;
      const { rows: again } = await client.query<{ due: boolean | null }>(signingKeySql.newest, [this.#config.keyRotationMs]);
      if (!again[0]!.due) return;
      await client.query(signingKeySql.dropPending);
      await this.#insert(client, key, this.#config.jwksCacheMs, "identity", undefined);
      this.#log.info({ kid: key.kid }, "scheduled signing key rotation");
    });
  }

  /** The key that signs now (its private part decrypted once per process). */
  async signer(signal?: AbortSignal): Promise<Signer> {
    const { rows } = await query<SignerRow>(this.#pool, signingKeySql.signer, [], signal);
    const row = rows[0];
    if (!row) throw new MeshError({ code: Code.UNAVAILABLE, reason: "SYS_NO_SIGNING_KEY", message: "no signing key is active yet; retry", retryAfterMs: 1000 });
    let key = this.#opened.get(row.kid);
    if (!key) {
      key = createPrivateKey({ key: openPrivateKey(this.#config.kek, row.kid, row.private_key), format: "der", type: "pkcs8" });
      this.#opened.set(row.kid, key);
    }
    return { kid: row.kid, key };
  }

  /** The published keys: the signer first, then the pending one and the retiring ones. */
  async published(signal?: AbortSignal): Promise<SigningKeyRow[]> {
    return (await query<SigningKeyRow>(this.#pool, signingKeySql.published, [], signal)).rows;
  }

  async #generate(): Promise<NewKey> {
    const { publicKey, privateKey } = await generateRsa("rsa", { modulusLength: SIGNING.modulusLength, publicExponent: 0x10001 });
    const exported = publicKey.export({ format: "jwk" });
    const jwk = { kty: "RSA", n: String(exported.n), e: String(exported.e) };
    const kid = await calculateJwkThumbprint(jwk, "sha256");
    const der = privateKey.export({ format: "der", type: "pkcs8" });
    return { kid, jwk, sealed: sealPrivateKey(this.#config.kek, kid, der) };
  }

  async #insert(client: pg.PoolClient, key: NewKey, delayMs: number, actor: string, origin: RequestOrigin | undefined): Promise<SigningKeyRow> {
    const { rows } = await client.query<SigningKeyRow>(signingKeySql.insert, [key.kid, "pending", JSON.stringify(key.jwk), key.sealed, delayMs]);
    const row = rows[0]!;
    await writeAudit(client, origin, {
      action: AuditAction.AUDIT_ACTION_SIGNING_KEY_ROTATED, outcome: AuditOutcome.AUDIT_OUTCOME_SUCCESS, actor, kid: row.kid,
      details: { activatesAt: row.activates_at.toISOString() },
    });
    return row;
  }

  /** Makes the latest due pending key ACTIVE and the keys it replaces RETIRING; returns it, if any. */
  async #activateDue(client: pg.PoolClient, actor: string, origin: RequestOrigin | undefined): Promise<SigningKeyRow | undefined> {
    const { rows } = await client.query<SigningKeyRow>(signingKeySql.duePending);
    const due = rows[0];
    if (!due) return undefined;
    const { rows: retired } = await client.query<{ kid: string }>(signingKeySql.retireSigners, [due.kid, due.activates_at, this.#config.accessTtlMs]);
    const { rows: active } = await client.query<SigningKeyRow>(signingKeySql.activate, [due.kid]);
    await writeAudit(client, origin, {
      action: AuditAction.AUDIT_ACTION_SIGNING_KEY_ACTIVATED, outcome: AuditOutcome.AUDIT_OUTCOME_SUCCESS, actor, kid: due.kid,
      details: { replaced: retired.map((r) => r.kid) },
    });
    return active[0];
  }

  async #removeExpired(client: pg.PoolClient, actor: string, origin: RequestOrigin | undefined): Promise<void> {
    const { rows } = await client.query<{ kid: string }>(signingKeySql.removeExpired);
    for (const { kid } of rows) {
      this.#opened.delete(kid);
      await writeAudit(client, origin, { action: AuditAction.AUDIT_ACTION_SIGNING_KEY_RETIRED, outcome: AuditOutcome.AUDIT_OUTCOME_SUCCESS, actor, kid });
    }
  }
}
