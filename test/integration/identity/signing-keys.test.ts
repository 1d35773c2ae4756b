import { generateKeyPairSync } from "node:crypto";
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SigningKeyState } from "@taskmesh/contracts/gen/taskmesh/identity/v1/identity";
import { openPrivateKey, sealPrivateKey } from "../../../services/identity/src/index.js";
import { Code } from "@taskmesh/kit";
import { failure, seconds, startIdentity, waitFor, type IdentityHarness } from "./support.js";

describe("identity: signing keys", () => {
  let h: IdentityHarness;
  let secret: string;

  beforeAll(async () => {
    // Access tokens live 3 s, so a replaced key leaves the JWKS 3 s after it stopped signing; sweeps every 200 ms.
    h = await startIdentity("identity_keys", { accessTtlMs: 3000, sweepIntervalMs: 200, scheduler: true });
    secret = (await h.client.createApiKey({ name: "rotator", scopes: ["tasks:read"], subject: "", ttl: undefined })).secret;
  });

  afterAll(async () => {
    await h?.stop();
  });

  const kids = async () => (await h.client.getJwks({})).keys.map((k) => k.kid);
  const verify = async (token: string) =>
    jwtVerify(token, createLocalJWKSet({ keys: (await h.client.getJwks({})).keys.map((k) => ({ ...k })) }), { issuer: "taskmesh-identity", audience: "taskmesh" });

  it("starts with one active key, stored encrypted under the key-encryption key", async () => {
    const [kid] = await kids();
    expect(await kids()).toHaveLength(1);
    const { rows } = await h.sql.query<{ state: string; private_key: Buffer }>("SELECT state, private_key FROM identity.signing_keys WHERE kid = $1", [kid]);
    expect(rows[0]!.state).toBe("active");
    const der = openPrivateKey(h.config.kek, kid!, rows[0]!.private_key);
    expect(rows[0]!.private_key.includes(der.subarray(0, 64))).toBe(false);
    expect(() => openPrivateKey(Buffer.alloc(32, 7), kid!, rows[0]!.private_key)).toThrow();
    expect(() => openPrivateKey(h.config.kek, "another-kid", rows[0]!.private_key)).toThrow();
  });

  it("with activation_delay 0s: new tokens carry the new kid, old tokens still verify, and the old key leaves the JWKS once its tokens expired", async () => {
    const oldToken = (await h.client.issueToken({ apiKey: secret, scopes: [] })).accessToken;
    const oldKid = decodeProtectedHeader(oldToken).kid!;
    const rotated = await h.client.rotateSigningKey({ activationDelay: seconds(0) });
    const newKid = rotated.newKey!.kid;
    expect(newKid).not.toBe(oldKid);
    expect(rotated.newKey!.state).toBe(SigningKeyState.SIGNING_KEY_STATE_ACTIVE);
    expect(rotated.keys.map((k) => [k.kid, k.state])).toEqual([[newKid, SigningKeyState.SIGNING_KEY_STATE_ACTIVE], [oldKid, SigningKeyState.SIGNING_KEY_STATE_RETIRING]]);
    const old = rotated.keys[1]!;
    expect(old.removedAt!.getTime() - old.retiredAt!.getTime()).toBe(3000);
    expect(await kids()).toEqual([newKid, oldKid]);

    const newToken = (await h.client.issueToken({ apiKey: secret, scopes: [] })).accessToken;
    expect(decodeProtectedHeader(newToken).kid).toBe(newKid);
    await verify(newToken);
    await verify(oldToken);

    await waitFor("the old key to leave the JWKS", async () => !(await kids()).includes(oldKid), 10_000);
    expect(await kids()).toEqual([newKid]);
    await expect(verify(oldToken)).rejects.toThrow();
    const { rows } = await h.sql.query<{ state: string }>("SELECT state FROM identity.signing_keys WHERE kid = $1", [oldKid]);
    await waitFor("the sweep to record it", async () => (await h.sql.query<{ state: string }>("SELECT state FROM identity.signing_keys WHERE kid = $1", [oldKid])).rows[0]!.state === "retired", 5000);
    expect(rows).toHaveLength(1);
  });

  it("with a delay: the new key is published at once and signs only after it", async () => {
    const [current] = await kids();
    const rotated = await h.client.rotateSigningKey({ activationDelay: seconds(1.5) });
    const pending = rotated.newKey!;
    expect(pending.state).toBe(SigningKeyState.SIGNING_KEY_STATE_PENDING);
    expect(await kids()).toEqual([current, pending.kid]);
    expect(decodeProtectedHeader((await h.client.issueToken({ apiKey: secret, scopes: [] })).accessToken).kid).toBe(current);
    await new Promise((r) => setTimeout(r, 1600));
    expect(decodeProtectedHeader((await h.client.issueToken({ apiKey: secret, scopes: [] })).accessToken).kid).toBe(pending.kid);
    expect((await kids())[0]).toBe(pending.kid);
    await waitFor("the activation to be recorded", async () =>
      (await h.sql.query<{ state: string }>("SELECT state FROM identity.signing_keys WHERE kid = $1", [pending.kid])).rows[0]!.state === "active", 5000);
  });

  it("answers ABORTED RES_CONCURRENT_ROTATION (with RetryInfo) while another rotation holds the lock, and never has two active keys", async () => {
    const holder = await h.sql.connect();
    try {
      await holder.query("BEGIN");
      await holder.query("SELECT pg_advisory_xact_lock(hashtext('taskmesh:identity'), hashtext('signing-keys'))");
      const e = await failure(h.client.rotateSigningKey({ activationDelay: seconds(0) }, { timeoutMs: 20_000 }));
      expect([e.code, e.reason]).toEqual([Code.ABORTED, "RES_CONCURRENT_ROTATION"]);
      expect(e.retryAfterMs).toBeGreaterThan(0);
    } finally {
      await holder.query("ROLLBACK");
      holder.release();
    }
    const results = await Promise.allSettled(Array.from({ length: 4 }, () => h.client.rotateSigningKey({ activationDelay: seconds(0) }, { timeoutMs: 20_000 })));
    for (const r of results) if (r.status === "rejected") expect(r.reason.reason).toBe("RES_CONCURRENT_ROTATION");
    expect(results.some((r) => r.status === "fulfilled")).toBe(true);
    const { rows } = await h.sql.query<{ n: string }>("SELECT count(*) AS n FROM identity.signing_keys WHERE state = 'active'");
    expect(rows[0]!.n).toBe("1");
    await verify((await h.client.issueToken({ apiKey: secret, scopes: [] })).accessToken);
  });

  it("a rotation that waited for another replica's rotation makes its own key the one signer, the other's retiring", async () => {
    // Replica A takes the lock and rotates while this replica's rotation waits for it.
    const holder = await h.sql.connect();
    let waiting: Promise<Awaited<ReturnType<typeof h.client.rotateSigningKey>>> | undefined;
    const other = `replica-a-${Date.now()}`;
    try {
      await holder.query("BEGIN");
      await holder.query("SELECT pg_advisory_xact_lock(hashtext('taskmesh:identity'), hashtext('signing-keys'))");
      waiting = h.client.rotateSigningKey({ activationDelay: seconds(0) }, { timeoutMs: 20_000 });
      await waitFor("the rotation to wait for the lock", async () =>
        (await h.sql.query("SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")).rowCount === 1, 5000);
      const { publicKey, privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
      const jwk = publicKey.export({ format: "jwk" });
      const sealed = sealPrivateKey(h.config.kek, other, privateKey.export({ format: "der", type: "pkcs8" }));
      await holder.query("UPDATE identity.signing_keys SET state = 'retiring', retired_at = clock_timestamp(), removed_at = clock_timestamp() + interval '3 s' WHERE state = 'active'");
      await holder.query("INSERT INTO identity.signing_keys (kid, state, public_jwk, private_key, created_at, activates_at) VALUES ($1, 'active', $2, $3, clock_timestamp(), clock_timestamp())",
        [other, JSON.stringify({ kty: "RSA", n: jwk.n, e: jwk.e }), sealed]);
      await holder.query("COMMIT");
    } finally {
      holder.release();
    }
    const rotated = await waiting!;
    expect(rotated.newKey!.state).toBe(SigningKeyState.SIGNING_KEY_STATE_ACTIVE);
    expect(rotated.keys.find((k) => k.kid === other)?.state).toBe(SigningKeyState.SIGNING_KEY_STATE_RETIRING);
    const { rows } = await h.sql.query<{ kid: string }>("SELECT kid FROM identity.signing_keys WHERE state = 'active'");
    expect(rows.map((r) => r.kid)).toEqual([rotated.newKey!.kid]);
    const token = (await h.client.issueToken({ apiKey: secret, scopes: [] })).accessToken;
    expect(decodeProtectedHeader(token).kid).toBe(rotated.newKey!.kid);
    await verify(token);
  });
});

describe("identity: scheduled signing key rotation", () => {
  it("rotates when the newest key is older than the rotation interval, activating the new key after the JWKS cache time", async () => {
    const h = await startIdentity("identity_schedule", { keyRotationMs: 1500, jwksCacheMs: 500, accessTtlMs: 1000, sweepIntervalMs: 100, scheduler: true });
    try {
      const { secret } = await h.client.createApiKey({ name: "scheduled", scopes: ["worker"], subject: "", ttl: undefined });
      const first = decodeProtectedHeader((await h.client.issueToken({ apiKey: secret, scopes: [] })).accessToken).kid;
      await waitFor("a scheduled rotation to sign new tokens", async () =>
        decodeProtectedHeader((await h.client.issueToken({ apiKey: secret, scopes: [] })).accessToken).kid !== first, 10_000);
      const { rows } = await h.sql.query<{ kid: string; state: string; gap: number }>(
        "SELECT kid, state, EXTRACT(EPOCH FROM (activates_at - created_at)) * 1000 AS gap FROM identity.signing_keys ORDER BY created_at");
      expect(rows[0]!.kid).toBe(first);
      expect(Math.round(Number(rows[1]!.gap))).toBe(500);
      // The key signs from its activation time on; the next sweep records the activation.
      const audited = async () => (await h.sql.query<{ action: number; actor: string }>("SELECT action, actor FROM identity.audit WHERE kid = $1 AND action >= 7 ORDER BY seq", [rows[1]!.kid])).rows;
      await waitFor("the activation to be audited", async () => (await audited()).length >= 2, 5000);
      expect((await audited()).slice(0, 2)).toEqual([{ action: 7, actor: "identity" }, { action: 8, actor: "identity" }]);
    } finally {
      await h.stop();
    }
  });
});
