import { createLocalJWKSet, decodeProtectedHeader, jwtVerify } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApiKeyState } from "@taskmesh/contracts/gen/taskmesh/identity/v1/identity";
import { Code } from "@taskmesh/kit";
import { failure, startIdentity, type IdentityHarness } from "./support.js";

describe("identity: API keys and token issue", () => {
  let h: IdentityHarness;

  beforeAll(async () => {
    h = await startIdentity("identity_api_keys");
  });

  afterAll(async () => {
    await h?.stop();
  });

  const jwksOf = async () => createLocalJWKSet({ keys: (await h.client.getJwks({})).keys.map((k) => ({ ...k })) });
  const newKey = (name: string, scopes = ["tasks:read", "tasks:write"], subject = "") => h.client.createApiKey({ name, scopes, subject, ttl: undefined });

  it("issues an RS256 access token that verifies against the JWKS, with the contract's claims", async () => {
    const { apiKey, secret } = await newKey("svc-a", ["tasks:read", "tasks:write"], "svc-a");
    expect(secret).toMatch(/^tmk_[A-Za-z0-9_-]{43}$/);
    expect(apiKey).toMatchObject({ name: "svc-a", subject: "svc-a", scopes: ["tasks:read", "tasks:write"], prefix: secret.slice(0, 8), state: ApiKeyState.API_KEY_STATE_ACTIVE, createdBy: "local" });
    const before = Math.floor(Date.now() / 1000);
    const issued = await h.client.issueToken({ apiKey: secret, scopes: [] });
    expect(issued).toMatchObject({ tokenType: "Bearer", expiresIn: 900, scopes: ["tasks:read", "tasks:write"] });
    expect(issued.refreshToken).toMatch(/^tmr_[A-Za-z0-9_-]{43}$/);
    expect(issued.refreshExpiresIn).toBeGreaterThan(30 * 86400 - 60);
    const header = decodeProtectedHeader(issued.accessToken);
    const jwks = await h.client.getJwks({});
    expect(header).toMatchObject({ alg: "RS256", kid: jwks.keys[0]!.kid });
    expect(jwks.keys[0]).toMatchObject({ kty: "RSA", use: "sig", alg: "RS256", e: "AQAB" });
    const { payload } = await jwtVerify(issued.accessToken, await jwksOf(), { issuer: "taskmesh-identity", audience: "taskmesh", algorithms: ["RS256"] });
    expect(payload).toMatchObject({ sub: "svc-a", scope: "tasks:read tasks:write", fam: issued.familyId, akid: apiKey!.id });
    expect(typeof payload.jti).toBe("string");
    expect(payload.exp! - payload.iat!).toBe(900);
    expect(Math.abs(payload.iat! - before)).toBeLessThanOrEqual(2);
    expect(issued.expiresAt!.getTime()).toBe(payload.exp! * 1000);
  });

  it("grants a subset of the key's scopes, and refuses more (PERMISSION_DENIED AUTH_SCOPE_NOT_GRANTED) or unknown ones (INVALID_ARGUMENT)", async () => {
    const { secret } = await newKey("svc-b", ["tasks:read"]);
    expect((await h.client.issueToken({ apiKey: secret, scopes: ["tasks:read"] })).scopes).toEqual(["tasks:read"]);
    const more = await failure(h.client.issueToken({ apiKey: secret, scopes: ["tasks:read", "admin"] }));
    expect([more.code, more.reason]).toEqual([Code.PERMISSION_DENIED, "AUTH_SCOPE_NOT_GRANTED"]);
    const unknown = await failure(h.client.issueToken({ apiKey: secret, scopes: ["tasks:delete"] }));
    expect([unknown.code, unknown.reason, unknown.violations[0]?.field]).toEqual([Code.INVALID_ARGUMENT, "VAL_UNKNOWN_SCOPE", "scopes[0]"]);
    const missing = await failure(h.client.issueToken({ apiKey: "", scopes: [] }));
    expect([missing.code, missing.reason, missing.violations[0]?.field]).toEqual([Code.INVALID_ARGUMENT, "VAL_MISSING_API_KEY", "api_key"]);
    // admin implies every scope
    const { secret: admin } = await newKey("svc-admin", ["admin"]);
    expect((await h.client.issueToken({ apiKey: admin, scopes: ["config:write", "worker"] })).scopes).toEqual(["worker", "config:write"]);
  });

  it("lists keys newest first without secrets, with last_used_at; a revoked key can no longer issue tokens", async () => {
    const { apiKey, secret } = await newKey("svc-c");
    const unused = await newKey("svc-d");
    await h.client.issueToken({ apiKey: secret, scopes: [] });
    const { apiKeys } = await h.client.listApiKeys({ pageSize: 0, pageToken: "", includeInactive: false, subject: "" });
    expect(apiKeys.map((k) => k.name).slice(0, 2)).toEqual(["svc-d", "svc-c"]);
    expect(JSON.stringify(apiKeys)).not.toContain(secret);
    expect(JSON.stringify(apiKeys)).not.toContain(unused.secret);
    const c = apiKeys.find((k) => k.id === apiKey!.id)!;
    expect(c.lastUsedAt).toBeInstanceOf(Date);
    expect(Math.abs(c.lastUsedAt!.getTime() - Date.now())).toBeLessThan(10_000);
    expect(apiKeys.find((k) => k.id === unused.apiKey!.id)!.lastUsedAt).toBeUndefined();

    const issued = await h.client.issueToken({ apiKey: secret, scopes: [] });
    const revoked = await h.client.revokeApiKey({ id: apiKey!.id, reason: "rotated out" });
    expect(revoked.apiKey).toMatchObject({ state: ApiKeyState.API_KEY_STATE_REVOKED });
    expect(revoked.revokedFamilies).toBe(2n);
    const again = await h.client.revokeApiKey({ id: apiKey!.id, reason: "" });
    expect([again.apiKey?.state, again.revokedFamilies]).toEqual([ApiKeyState.API_KEY_STATE_REVOKED, 0n]);
    const refused = await failure(h.client.issueToken({ apiKey: secret, scopes: [] }));
    expect([refused.code, refused.reason]).toEqual([Code.UNAUTHENTICATED, "AUTH_INVALID_API_KEY"]);
    const unknown = await failure(h.client.issueToken({ apiKey: "tmk_notakeyatallnotakeyatallnotakeyatall", scopes: [] }));
    expect([unknown.code, unknown.reason, unknown.message]).toEqual([refused.code, refused.reason, refused.message]);
    // its families were revoked with it
    const refresh = await failure(h.client.refreshToken({ refreshToken: issued.refreshToken, scopes: [] }));
    expect(refresh.reason).toBe("AUTH_INVALID_REFRESH_TOKEN");
    // the active list no longer shows it, the full one does; the name is free again
    expect((await h.client.listApiKeys({ pageSize: 0, pageToken: "", includeInactive: false, subject: "" })).apiKeys.map((k) => k.id)).not.toContain(apiKey!.id);
    expect((await h.client.listApiKeys({ pageSize: 0, pageToken: "", includeInactive: true, subject: "" })).apiKeys.map((k) => k.id)).toContain(apiKey!.id);
    await newKey("svc-c");
    const taken = await failure(newKey("svc-c"));
    expect([taken.code, taken.reason]).toEqual([Code.ALREADY_EXISTS, "RES_API_KEY_NAME_TAKEN"]);
    const missing = await failure(h.client.revokeApiKey({ id: "0190a5b3-7c1d-7e2f-8a3b-4c5d6e7f8091", reason: "" }));
    expect([missing.code, missing.reason]).toEqual([Code.NOT_FOUND, "RES_API_KEY_NOT_FOUND"]);
  });

  it("pages keys with an opaque token", async () => {
    for (let i = 0; i < 5; i++) await newKey(`page-${i}`, ["worker"], "pager");
    const seen: string[] = [];
    let pageToken = "";
    do {
      const page = await h.client.listApiKeys({ pageSize: 2, pageToken, includeInactive: false, subject: "pager" });
      expect(page.apiKeys.length).toBeLessThanOrEqual(2);
      seen.push(...page.apiKeys.map((k) => k.name));
      pageToken = page.nextPageToken;
    } while (pageToken !== "");
    expect(seen).toEqual(["page-4", "page-3", "page-2", "page-1", "page-0"]);
    const foreign = await failure(h.client.listApiKeys({ pageSize: 2, pageToken: Buffer.from("{\"v\":1,\"s\":\"x\",\"c\":1}").toString("base64url"), includeInactive: false, subject: "pager" }));
    expect([foreign.code, foreign.reason]).toEqual([Code.INVALID_ARGUMENT, "VAL_INVALID_PAGE_TOKEN"]);
    const size = await failure(h.client.listApiKeys({ pageSize: 1001, pageToken: "", includeInactive: false, subject: "" }));
    expect(size.reason).toBe("VAL_INVALID_PAGE_SIZE");
  });

  it("treats a key past its expiry as EXPIRED: refused like an unknown key, its name free again", async () => {
    const { apiKey, secret } = await h.client.createApiKey({ name: "svc-expiring", scopes: ["worker"], subject: "", ttl: { seconds: 3600n, nanos: 0 } });
    const issued = await h.client.issueToken({ apiKey: secret, scopes: [] });
    await h.sql.query("UPDATE identity.api_keys SET expires_at = now() - interval '1 second' WHERE id = $1", [apiKey!.id]);
    const refused = await failure(h.client.issueToken({ apiKey: secret, scopes: [] }));
    expect([refused.code, refused.reason]).toEqual([Code.UNAUTHENTICATED, "AUTH_INVALID_API_KEY"]);
    expect((await failure(h.client.refreshToken({ refreshToken: issued.refreshToken, scopes: [] }))).reason).toBe("AUTH_INVALID_REFRESH_TOKEN");
    const listed = await h.client.listApiKeys({ pageSize: 0, pageToken: "", includeInactive: true, subject: apiKey!.subject });
    expect(listed.apiKeys.map((k) => k.state)).toEqual([ApiKeyState.API_KEY_STATE_EXPIRED]);
    await h.client.createApiKey({ name: "svc-expiring", scopes: ["worker"], subject: "", ttl: undefined });
  });
});
