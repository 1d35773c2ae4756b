import { execFile } from "node:child_process";
import { createPrivateKey, generateKeyPairSync, type KeyObject } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { SignJWT, decodeJwt } from "jose";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ListTasksRequest, SubmitTaskRequest, TaskServiceService } from "@taskmesh/contracts/gen/taskmesh/coordinator/v1/task_service";
import { IdentityServiceService } from "@taskmesh/contracts/gen/taskmesh/identity/v1/identity";
import { openPrivateKey } from "../../services/identity/src/kek.js";
import { Code, MeshError, createClient, type MeshClient } from "@taskmesh/kit";
import { bearer, failure, startUp, until, type UpRun } from "../support/up.js";
import { counterSum } from "../support/envoy-admin.js";

const run = promisify(execFile);
// Identity, the edge's token checks and the global rate limits, as a user
// meets them: everything through the edge Envoy of a real `taskmesh up`.
describe("identity and edge security under up", { timeout: 90_000 }, () => {
  let upRun: UpRun;
  let tasks: MeshClient<typeof TaskServiceService>;
  let identity: MeshClient<typeof IdentityServiceService>;
  let admin: string;
  let sql: pg.Pool;
  /** Every secret and refresh token this file sees: none may be written anywhere in clear. */
  const secrets: string[] = [];

  const list = (token: string) => tasks.listTasks(ListTasksRequest.fromPartial({ pageSize: 1 }), { metadata: bearer(token), timeoutMs: 5000 });

  /** A new API key (made by the admin through the edge) and a token pair from it. */
  const keyWith = async (name: string, scopes: string[]) => {
    const { apiKey, secret } = await identity.createApiKey({ name, scopes, subject: name, ttl: undefined }, { metadata: bearer(admin) });
    const issued = await identity.issueToken({ apiKey: secret, scopes: [] });
    secrets.push(secret, issued.refreshToken);
    return { apiKey: apiKey!, secret, ...issued };
  };

  /** Signs `claims` with identity's active signing key, read from its table and opened with the run's key-encryption key. */
  const signWithIdentityKey = async (claims: Record<string, unknown>, exp: number, aud: string): Promise<string> => {
    const kek = Buffer.from(readFileSync(join(upRun.stateDir, "identity.kek"), "utf8").trim(), "base64");
    const { rows } = await sql.query<{ kid: string; private_key: Buffer }>("SELECT kid, private_key FROM identity.signing_keys WHERE state = 'active'");
    const key: KeyObject = createPrivateKey({ key: openPrivateKey(kek, rows[0]!.kid, rows[0]!.private_key), format: "der", type: "pkcs8" });
    return new SignJWT(claims).setProtectedHeader({ alg: "RS256", kid: rows[0]!.kid }).setIssuer("taskmesh-identity").setAudience(aud)
      .setSubject("forger").setIssuedAt(exp - 900).setExpirationTime(exp).sign(key);
  };

  beforeAll(async () => {
    // A short reuse grace, so the reuse test need not wait 10 s.
    upRun = await startUp([], { TASKMESH_IDENTITY_REUSE_GRACE: "1s" });
    tasks = createClient(TaskServiceService, upRun.edge);
    identity = createClient(IdentityServiceService, upRun.edge);
    admin = await upRun.token();
    const password = readFileSync(join(upRun.stateDir, "postgres.password"), "utf8").trim();
    sql = new pg.Pool({ connectionString: `postgres://postgres:${password}@127.0.0.1:${upRun.env.TASKMESH_POSTGRES_PORT}/taskmesh`, max: 2 });
    secrets.push(readFileSync(join(upRun.stateDir, "bootstrap-api-key"), "utf8").trim());
  }, 400_000); // waiting for the lock included

  afterAll(async () => {
    tasks?.close();
    identity?.close();
    await sql?.end();
    await upRun?.down();
  }, 60_000);

  it("lets a valid token through, and refuses a missing, expired, forged, wrong-audience or tampered one with UNAUTHENTICATED", async () => {
    await expect(list(admin)).resolves.toBeDefined();

    const missing = await failure(tasks.listTasks(ListTasksRequest.fromPartial({ pageSize: 1 })));
    expect([missing.code, missing.reason]).toEqual([Code.UNAUTHENTICATED, "AUTH_MISSING_TOKEN"]);
    expect((await fetch(`http://${upRun.edge}/v1/tasks`)).status).toBe(401);

    const now = Math.floor(Date.now() / 1000);
    const claims = { scope: "admin" };
    const expired = await signWithIdentityKey(claims, now - 120, "taskmesh");
    const wrongAudience = await signWithIdentityKey(claims, now + 600, "someone-else");
    // The same identity's key signs a valid token; sanity check of the forging above.
    await expect(list(await signWithIdentityKey(claims, now + 600, "taskmesh"))).resolves.toBeDefined();
    const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const unknownKey = await new SignJWT(claims).setProtectedHeader({ alg: "RS256", kid: decodeProtectedKid(admin) }).setIssuer("taskmesh-identity")
      .setAudience("taskmesh").setSubject("forger").setIssuedAt().setExpirationTime("10m").sign(privateKey);
    const [header, payload, signature] = admin.split(".") as [string, string, string];
    const tampered = `${header}.${Buffer.from(JSON.stringify({ ...decodeJwt(admin), sub: "someone-else" })).toString("base64url")}.${signature}`;
    void payload;
    for (const [what, token] of Object.entries({ expired, wrongAudience, unknownKey, tampered })) {
      const e = await failure(list(token));
      expect([what, e.code, e.reason]).toEqual([what, Code.UNAUTHENTICATED, "AUTH_INVALID_TOKEN"]);
    }
  });

  it("a token the edge has already checked (and keeps) is refused once it expires", async () => {
    const exp = Math.floor(Date.now() / 1000) + 3;
    const token = await signWithIdentityKey({ scope: "admin" }, exp, "taskmesh");
    const cacheHits = () => counterSum(`http://127.0.0.1:${upRun.env.TASKMESH_EDGE_ADMIN_PORT}`, "jwt_authn\\.jwt_cache_hit$");
    await expect(list(token)).resolves.toBeDefined();
    const hits = await cacheHits();
    await expect(list(token)).resolves.toBeDefined();
    expect(await cacheHits(), "the second call answered from the edge's token cache").toBeGreaterThan(hits);
    // Past its exp and the edge's 30 s of allowed clock skew.
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, (exp + 31) * 1000 - Date.now())));
    const e = await failure(list(token));
    expect([e.code, e.reason]).toEqual([Code.UNAUTHENTICATED, "AUTH_INVALID_TOKEN"]);
  }, 60_000);

  it("a token without the method's scope gets PERMISSION_DENIED from the service; admin RPCs need admin", async () => {
    const reader = await keyWith("e2e-reader", ["tasks:read"]);
    await expect(list(reader.accessToken)).resolves.toBeDefined();
    const submit = await failure(tasks.submitTask(SubmitTaskRequest.fromPartial({ capability: "echo" }), { metadata: bearer(reader.accessToken) }));
    expect([submit.code, submit.reason, submit.metadata.scope]).toEqual([Code.PERMISSION_DENIED, "AUTH_MISSING_SCOPE", "tasks:write"]);
    const overHttp = await fetch(`http://${upRun.edge}/v1/tasks`, {
      method: "POST", headers: { "content-type": "application/json", authorization: `Bearer ${reader.accessToken}` }, body: JSON.stringify({ capability: "echo" }),
    });
    expect(overHttp.status).toBe(403);
    const createKey = await failure(identity.createApiKey({ name: "nope", scopes: ["admin"], subject: "", ttl: undefined }, { metadata: bearer(reader.accessToken) }));
    expect([createKey.code, createKey.reason]).toEqual([Code.PERMISSION_DENIED, "AUTH_MISSING_SCOPE"]);
  });

  it("rotates refresh tokens; presenting a used one again revokes the whole family (HTTP/JSON through the edge)", async () => {
    const key = await keyWith("e2e-refresher", ["tasks:read"]);
    const post = (path: string, body: object) => fetch(`http://${upRun.edge}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    const first = await post("/v1/tokens", { apiKey: key.secret });
    expect(first.status).toBe(200);
    const pair = (await first.json()) as { accessToken: string; refreshToken: string; familyId: string };
    const second = await post("/v1/tokens:refresh", { refreshToken: pair.refreshToken });
    expect(second.status).toBe(200);
    const next = (await second.json()) as { accessToken: string; refreshToken: string; familyId: string };
    secrets.push(pair.refreshToken, next.refreshToken);
    expect(next.familyId).toBe(pair.familyId);
    expect(next.refreshToken).not.toBe(pair.refreshToken);
    await new Promise((r) => setTimeout(r, 1500)); // past the reuse grace
    const reused = await post("/v1/tokens:refresh", { refreshToken: pair.refreshToken });
    expect(reused.status).toBe(401);
    expect(JSON.stringify(await reused.json())).toContain("AUTH_REFRESH_TOKEN_REUSED");
    // The family is revoked: the newest refresh token no longer works either.
    expect((await post("/v1/tokens:refresh", { refreshToken: next.refreshToken })).status).toBe(401);
  });

  it("grpcurl through the edge lists, describes and calls identity's methods (reflection speaks for every exposed service)", async () => {
    const grpcurl = async (...args: string[]) => (await run("grpcurl", ["-plaintext", ...args], { timeout: 20_000 })).stdout;
    const listed = await grpcurl(upRun.edge, "list");
    for (const service of ["taskmesh.coordinator.v1.TaskService", "taskmesh.identity.v1.IdentityService", "taskmesh.events.v1.EventService", "taskmesh.config.v1.ConfigService"]) {
      expect(listed).toContain(service);
    }
    expect(await grpcurl(upRun.edge, "describe", "taskmesh.identity.v1.IdentityService.IssueToken")).toMatch(/rpc IssueToken \( \.taskmesh\.identity\.v1\.IssueTokenRequest \)/);
    const key = await keyWith("e2e-grpcurl", ["tasks:read"]);
    const issued = JSON.parse(await grpcurl("-d", JSON.stringify({ apiKey: key.secret }), upRun.edge, "taskmesh.identity.v1.IdentityService/IssueToken")) as { accessToken: string; refreshToken: string };
    secrets.push(issued.refreshToken);
    expect(decodeJwt(issued.accessToken)).toMatchObject({ sub: "e2e-grpcurl", scope: "tasks:read" });
  });

  it("a revoked API key can no longer issue tokens", async () => {
    const key = await keyWith("e2e-revoked", ["tasks:read"]);
    await identity.revokeApiKey({ id: key.apiKey.id, reason: "e2e" }, { metadata: bearer(admin) });
    const e = await failure(identity.issueToken({ apiKey: key.secret, scopes: [] }));
    expect([e.code, e.reason]).toEqual([Code.UNAUTHENTICATED, "AUTH_INVALID_API_KEY"]);
  });

  it("a signing-key rotation keeps tokens of the old key valid, and publishes the new key at once", async () => {
    const before = await keyWith("e2e-rotation", ["tasks:read"]);
    const oldKid = decodeProtectedKid(before.accessToken);
    const { newKey } = await identity.rotateSigningKey({ activationDelay: undefined }, { metadata: bearer(admin) });
    const jwks = (await (await fetch(`http://${upRun.edge}/.well-known/jwks.json`)).json()) as { keys: Array<{ kid: string }> };
    expect(jwks.keys.map((k) => k.kid)).toEqual(expect.arrayContaining([oldKid, newKey!.kid]));
    await expect(list(before.accessToken)).resolves.toBeDefined();
  });

  it("a limit of N per minute admits N calls and refuses the next with RetryInfo (429 over HTTP); a new limit applies without restart", async () => {
    const method = "/taskmesh.coordinator.v1.TaskService/ListTasks";
    const limit = (n: number) => JSON.stringify({ "e2e-list": { descriptor: [{ key: "subject" }, { key: "method", value: method }], requests: n, per: "minute" } });
    const put = await upRun.taskmesh("config", "put", "/ratelimit/limits", limit(5));
    expect(put.code, put.stderr).toBe(0);
    // The limit applies live: a throwaway subject is refused once the ratelimit service has it.
    const probe = await keyWith("e2e-probe", ["tasks:read"]);
    await until("the limit to apply", 10_000, async () => (await list(probe.accessToken).then(() => undefined, (e: unknown) => MeshError.from(e))));

    const user = await keyWith("e2e-limited", ["tasks:read"]);
    for (let i = 0; i < 5; i++) await list(user.accessToken);
    const refused = await failure(list(user.accessToken));
    expect(refused.code).toBe(Code.RESOURCE_EXHAUSTED);
    expect(refused.retryAfterMs).toBeGreaterThan(0);
    expect(refused.retryAfterMs).toBeLessThanOrEqual(60_000);
    const http = await fetch(`http://${upRun.edge}/v1/tasks?pageSize=1`, { headers: { authorization: `Bearer ${user.accessToken}` } });
    expect(http.status).toBe(429);
    expect(http.headers.get("x-ratelimit-limit")).toMatch(/^5\b/);
    // Another method is not limited by it.
    await expect(tasks.getTask({ id: "00000000-0000-7000-8000-000000000000", view: 0 }, { metadata: bearer(user.accessToken) }).catch((e: unknown) => MeshError.from(e).code)).resolves.toBe(Code.NOT_FOUND);

    // Raised to 8: the same subject gets the 3 more calls, then is refused again.
    expect((await upRun.taskmesh("config", "put", "/ratelimit/limits", limit(8))).code).toBe(0);
    await until("the new limit to apply", 10_000, async () => (await list(user.accessToken).then(() => true, () => undefined)));
    await list(user.accessToken);
    await list(user.accessToken);
    expect((await failure(list(user.accessToken))).code).toBe(Code.RESOURCE_EXHAUSTED);
    await upRun.taskmesh("config", "put", "/ratelimit/limits", "{}");
  });

  it("never writes an API secret or a refresh token in clear: not in any log, trace or table", async () => {
    expect(secrets.length).toBeGreaterThan(8);
    const logDir = join(upRun.stateDir, "logs");
    const logs = readdirSync(logDir).map((f) => readFileSync(join(logDir, f), "utf8")).join("\n");
    expect(logs.length).toBeGreaterThan(1000);
    // Spans reach Jaeger in batches; wait for identity's.
    const jaeger = `http://127.0.0.1:${upRun.env.TASKMESH_JAEGER_PORT}`;
    const traces = await until("identity's spans in Jaeger", 30_000, async () => {
      const text = await (await fetch(`${jaeger}/api/traces?service=identity&lookback=1h&limit=500`)).text();
      return text.includes("IssueToken") ? text : undefined;
    });
    const { rows } = await sql.query<{ dump: string }>(`
      SELECT string_agg(t::text, E'\\n') AS dump FROM (
        SELECT a::text AS t FROM identity.api_keys a UNION ALL SELECT r::text FROM identity.refresh_tokens r UNION ALL SELECT x::text FROM identity.audit x) s`);
    const tables = rows[0]!.dump;
    expect(tables.length).toBeGreaterThan(1000);
    for (const secret of secrets) {
      expect(logs.includes(secret), "a log holds a secret").toBe(false);
      expect(traces.includes(secret), "a trace holds a secret").toBe(false);
      expect(tables.includes(secret), "a table holds a secret").toBe(false);
    }
  });
});

function decodeProtectedKid(token: string): string {
  return (JSON.parse(Buffer.from(token.split(".")[0]!, "base64url").toString("utf8")) as { kid: string }).kid;
}
