import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code } from "@taskmesh/kit";
import { edge, failure, seconds, startIdentity, type IdentityHarness } from "./support.js";

describe("identity: admin rpcs and input checks", () => {
  let h: IdentityHarness;

  beforeAll(async () => {
    h = await startIdentity("identity_admin");
  });

  afterAll(async () => {
    await h?.stop();
  });

  const count = async (table: string) => Number((await h.sql.query<{ n: string }>(`SELECT count(*) AS n FROM identity.${table}`)).rows[0]!.n);
  const deniedAudits = async (reason: string) =>
    Number((await h.sql.query<{ n: string }>("SELECT count(*) AS n FROM identity.audit WHERE outcome = 2 AND reason = $1", [reason])).rows[0]!.n);

  const adminCalls = (metadata: ReturnType<typeof edge>) => ({
    createApiKey: () => h.client.createApiKey({ name: "x", scopes: ["worker"], subject: "", ttl: undefined }, { metadata }),
    listApiKeys: () => h.client.listApiKeys({ pageSize: 0, pageToken: "", includeInactive: false, subject: "" }, { metadata }),
    revokeApiKey: () => h.client.revokeApiKey({ id: "0190a5b3-7c1d-7e2f-8a3b-4c5d6e7f8091", reason: "" }, { metadata }),
    rotateSigningKey: () => h.client.rotateSigningKey({ activationDelay: seconds(0) }, { metadata }),
  });

  it("refuses admin rpcs without the admin scope: PERMISSION_DENIED AUTH_MISSING_SCOPE, audited, nothing changed", async () => {
    const [keys, signingKeys] = [await count("api_keys"), await count("signing_keys")];
    const calls = adminCalls(edge({ sub: "reader", scope: "tasks:read" }));
    for (const [name, call] of Object.entries(calls)) {
      const e = await failure(call());
      expect([name, e.code, e.reason, e.metadata.scope]).toEqual([name, Code.PERMISSION_DENIED, "AUTH_MISSING_SCOPE", "admin"]);
    }
    expect([await count("api_keys"), await count("signing_keys")]).toEqual([keys, signingKeys]);
    // create, revoke and rotate are audited as DENIED, with the caller
    const { rows } = await h.sql.query<{ action: number; actor: string }>("SELECT action, actor FROM identity.audit WHERE reason = 'AUTH_MISSING_SCOPE' ORDER BY seq");
    expect(rows).toEqual([{ action: 5, actor: "reader" }, { action: 6, actor: "reader" }, { action: 7, actor: "reader" }]);
  });

  it("refuses admin rpcs through the edge without a token: UNAUTHENTICATED AUTH_MISSING_TOKEN", async () => {
    for (const [name, call] of Object.entries(adminCalls(edge()))) {
      const e = await failure(call());
      expect([name, e.code, e.reason]).toEqual([name, Code.UNAUTHENTICATED, "AUTH_MISSING_TOKEN"]);
    }
    expect(await deniedAudits("AUTH_MISSING_TOKEN")).toBe(3);
  });

  it("takes admin rpcs from an admin token through the edge, and records its subject as the creator", async () => {
    const created = await h.client.createApiKey({ name: "by-admin", scopes: ["worker"], subject: "", ttl: seconds(7200) }, { metadata: edge({ sub: "ops", scope: "admin" }) });
    expect(created.apiKey).toMatchObject({ createdBy: "ops", subject: `apikey:${created.apiKey!.id}` });
    expect(created.apiKey!.expiresAt!.getTime() - Date.now()).toBeGreaterThan(7100_000);
  });

  it("answers bad input with INVALID_ARGUMENT and field violations, and stores nothing", async () => {
    const before = [await count("api_keys"), await count("families"), await count("signing_keys")];
    const bad = await failure(h.client.createApiKey({ name: "no spaces allowed", scopes: ["tasks:read", "root"], subject: "a b", ttl: seconds(60) }));
    expect([bad.code, bad.reason]).toEqual([Code.INVALID_ARGUMENT, "VAL_INVALID_NAME"]);
    expect(bad.violations.map((v) => [v.field, v.reason])).toEqual([
      ["name", "VAL_INVALID_NAME"], ["scopes[1]", "VAL_UNKNOWN_SCOPE"], ["subject", "VAL_INVALID_ARGUMENT"], ["ttl", "VAL_INVALID_EXPIRY"],
    ]);
    const noScopes = await failure(h.client.createApiKey({ name: "ok", scopes: [], subject: "", ttl: undefined }));
    expect([noScopes.reason, noScopes.violations[0]?.field]).toEqual(["VAL_UNKNOWN_SCOPE", "scopes"]);
    const longName = await failure(h.client.createApiKey({ name: "n".repeat(65), scopes: ["worker"], subject: "", ttl: undefined }));
    expect(longName.reason).toBe("VAL_INVALID_NAME");
    const tooLong = await failure(h.client.createApiKey({ name: "ok", scopes: ["worker"], subject: "", ttl: seconds(3651 * 86400) }));
    expect(tooLong.reason).toBe("VAL_INVALID_EXPIRY");
    const badId = await failure(h.client.revokeApiKey({ id: "not-a-uuid", reason: "" }));
    expect([badId.code, badId.reason, badId.violations[0]?.field]).toEqual([Code.INVALID_ARGUMENT, "VAL_INVALID_ID", "id"]);
    const delay = await failure(h.client.rotateSigningKey({ activationDelay: seconds(86401) }));
    expect([delay.code, delay.reason, delay.violations[0]?.field]).toEqual([Code.INVALID_ARGUMENT, "VAL_INVALID_DURATION", "activation_delay"]);
    const reason = await failure(h.client.revokeToken({ target: { $case: "subject", value: "x" }, reason: "r".repeat(257) }));
    expect([reason.code, reason.violations[0]?.field]).toEqual([Code.INVALID_ARGUMENT, "reason"]);
    const family = await failure(h.client.revokeToken({ target: { $case: "familyId", value: "nope" }, reason: "" }));
    expect([family.code, family.violations[0]?.field]).toEqual([Code.INVALID_ARGUMENT, "family_id"]);
    expect([await count("api_keys"), await count("families"), await count("signing_keys")]).toEqual(before);
  });
});
