import { createLocalJWKSet, jwtVerify } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code } from "@taskmesh/kit";
import { edge, failure, fromAddress, startIdentity, type IdentityHarness } from "./support.js";

describe("identity: refresh tokens, revocation and failure throttling", () => {
  let h: IdentityHarness;

  beforeAll(async () => {
    h = await startIdentity("identity_tokens", { reuseGraceMs: 400 });
  });

  afterAll(async () => {
    await h?.stop();
  });

  const jwksOf = async () => createLocalJWKSet({ keys: (await h.client.getJwks({})).keys.map((k) => ({ ...k })) });
  const newKey = (name: string, scopes = ["tasks:read", "tasks:write"], subject = "") => h.client.createApiKey({ name, scopes, subject, ttl: undefined });

  it("rotates refresh tokens; a retired one presented again after the grace revokes the family (AUTH_REFRESH_TOKEN_REUSED)", async () => {
    const { secret } = await newKey("svc-refresh", ["tasks:read", "events:read"], "svc-refresh");
    const first = await h.client.issueToken({ apiKey: secret, scopes: [] });
    const second = await h.client.refreshToken({ refreshToken: first.refreshToken, scopes: [] });
    expect(second.refreshToken).not.toBe(first.refreshToken);
    expect(second.familyId).toBe(first.familyId);
    expect(second.scopes).toEqual(["tasks:read", "events:read"]);
    const { payload } = await jwtVerify(second.accessToken, await jwksOf(), { issuer: "taskmesh-identity", audience: "taskmesh" });
    expect(payload).toMatchObject({ sub: "svc-refresh", fam: first.familyId, scope: "tasks:read events:read" });
    // narrower scopes on refresh; never more than the family's
    const third = await h.client.refreshToken({ refreshToken: second.refreshToken, scopes: ["events:read"] });
    expect(third.scopes).toEqual(["events:read"]);
    const wider = await failure(h.client.refreshToken({ refreshToken: third.refreshToken, scopes: ["tasks:write"] }));
    expect([wider.code, wider.reason]).toEqual([Code.PERMISSION_DENIED, "AUTH_SCOPE_NOT_GRANTED"]);

    // within the grace: refused, and the family lives on
    const retried = await failure(h.client.refreshToken({ refreshToken: second.refreshToken, scopes: [] }));
    expect([retried.code, retried.reason]).toEqual([Code.UNAUTHENTICATED, "AUTH_INVALID_REFRESH_TOKEN"]);
    const fourth = await h.client.refreshToken({ refreshToken: third.refreshToken, scopes: [] });

    // after the grace: reuse, the whole family is revoked
    await new Promise((r) => setTimeout(r, 500));
    const reused = await failure(h.client.refreshToken({ refreshToken: first.refreshToken, scopes: [] }));
    expect([reused.code, reused.reason]).toEqual([Code.UNAUTHENTICATED, "AUTH_REFRESH_TOKEN_REUSED"]);
    const current = await failure(h.client.refreshToken({ refreshToken: fourth.refreshToken, scopes: [] }));
    expect([current.code, current.reason]).toEqual([Code.UNAUTHENTICATED, "AUTH_INVALID_REFRESH_TOKEN"]);
    const missing = await failure(h.client.refreshToken({ refreshToken: "", scopes: [] }));
    expect([missing.code, missing.reason]).toEqual([Code.INVALID_ARGUMENT, "VAL_MISSING_REFRESH_TOKEN"]);
    // another family of the same key is untouched
    const other = await h.client.issueToken({ apiKey: secret, scopes: [] });
    await h.client.refreshToken({ refreshToken: other.refreshToken, scopes: [] });
  });

  it("revokes a family by token (no scope needed), by id and by subject (own subject or admin)", async () => {
    const { secret } = await newKey("svc-revoke", ["tasks:read"], "svc-revoke");
    const byAccess = await h.client.issueToken({ apiKey: secret, scopes: [] });
    const anonymous = edge({ sub: "someone-else", scope: "tasks:read" });
    expect((await h.client.revokeToken({ target: { $case: "token", value: byAccess.accessToken }, reason: "logout" }, { metadata: anonymous })).revokedFamilies).toBe(1n);
    expect((await failure(h.client.refreshToken({ refreshToken: byAccess.refreshToken, scopes: [] }))).reason).toBe("AUTH_INVALID_REFRESH_TOKEN");
    const byRefresh = await h.client.issueToken({ apiKey: secret, scopes: [] });
    expect((await h.client.revokeToken({ target: { $case: "token", value: byRefresh.refreshToken }, reason: "" })).revokedFamilies).toBe(1n);
    expect((await h.client.revokeToken({ target: { $case: "token", value: byRefresh.refreshToken }, reason: "" })).revokedFamilies).toBe(0n);
    expect((await h.client.revokeToken({ target: { $case: "token", value: "tmr_unknownunknownunknownunknownunknown" }, reason: "" })).revokedFamilies).toBe(0n);
    expect((await h.client.revokeToken({ target: { $case: "token", value: "a.b.c" }, reason: "" })).revokedFamilies).toBe(0n);

    const byId = await h.client.issueToken({ apiKey: secret, scopes: [] });
    const notMine = await failure(h.client.revokeToken({ target: { $case: "familyId", value: byId.familyId }, reason: "" }, { metadata: anonymous }));
    expect([notMine.code, notMine.reason]).toEqual([Code.PERMISSION_DENIED, "AUTH_MISSING_SCOPE"]);
    const own = edge({ sub: "svc-revoke", scope: "tasks:read" });
    expect((await h.client.revokeToken({ target: { $case: "familyId", value: byId.familyId }, reason: "" }, { metadata: own })).revokedFamilies).toBe(1n);

    await h.client.issueToken({ apiKey: secret, scopes: [] });
    await h.client.issueToken({ apiKey: secret, scopes: [] });
    const othersSubject = await failure(h.client.revokeToken({ target: { $case: "subject", value: "svc-revoke" }, reason: "" }, { metadata: anonymous }));
    expect(othersSubject.reason).toBe("AUTH_MISSING_SCOPE");
    const admin = edge({ sub: "ops", scope: "admin" });
    expect((await h.client.revokeToken({ target: { $case: "subject", value: "svc-revoke" }, reason: "incident" }, { metadata: admin })).revokedFamilies).toBe(2n);
    const noTarget = await failure(h.client.revokeToken({ target: undefined, reason: "" }));
    expect([noTarget.code, noTarget.reason]).toEqual([Code.INVALID_ARGUMENT, "VAL_MISSING_TARGET"]);
    const noToken = await failure(h.client.revokeToken({ target: { $case: "subject", value: "svc-revoke" }, reason: "" }, { metadata: edge() }));
    expect([noToken.code, noToken.reason]).toEqual([Code.UNAUTHENTICATED, "AUTH_MISSING_TOKEN"]);
  });

  it("refuses token requests after 10 failures from one address (RESOURCE_EXHAUSTED RATE_TOO_MANY_FAILURES with RetryInfo)", async () => {
    const { secret } = await newKey("svc-throttle", ["tasks:read"]);
    const attacker = fromAddress("203.0.113.7");
    for (let i = 0; i < 10; i++) {
      const e = await failure(h.client.issueToken({ apiKey: `tmk_guess${i}guess${i}guess${i}guess${i}guess`, scopes: [] }, { metadata: attacker }));
      expect(e.reason).toBe("AUTH_INVALID_API_KEY");
    }
    const throttled = await failure(h.client.issueToken({ apiKey: secret, scopes: [] }, { metadata: attacker }));
    expect([throttled.code, throttled.reason]).toEqual([Code.RESOURCE_EXHAUSTED, "RATE_TOO_MANY_FAILURES"]);
    expect(throttled.retryAfterMs).toBeGreaterThan(1000);
    expect(throttled.retryAfterMs).toBeLessThanOrEqual(60_000);
    // other addresses are not affected; the edge's appended address is the one counted, not a forged one before it
    expect((await h.client.issueToken({ apiKey: secret, scopes: [] }, { metadata: fromAddress("203.0.113.7, 198.51.100.2") })).accessToken).toBeTruthy();
  });
});

describe("identity: token family lifetime", () => {
  it("never lets a refresh token outlive its family's absolute lifetime", async () => {
    const h = await startIdentity("identity_family_ttl", { familyTtlMs: 1500, refreshTtlMs: 60_000 });
    try {
      const { secret } = await h.client.createApiKey({ name: "short-family", scopes: ["worker"], subject: "", ttl: undefined });
      const issued = await h.client.issueToken({ apiKey: secret, scopes: [] });
      expect(issued.refreshExpiresIn).toBeLessThanOrEqual(1);
      const next = await h.client.refreshToken({ refreshToken: issued.refreshToken, scopes: [] });
      expect(next.refreshExpiresIn).toBeLessThanOrEqual(1);
      await new Promise((r) => setTimeout(r, 1600));
      const e = await failure(h.client.refreshToken({ refreshToken: next.refreshToken, scopes: [] }));
      expect([e.code, e.reason]).toEqual([Code.UNAUTHENTICATED, "AUTH_INVALID_REFRESH_TOKEN"]);
    } finally {
      await h.stop();
    }
  });
});
