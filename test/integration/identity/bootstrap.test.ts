import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import { IdentityServiceService } from "@taskmesh/contracts/gen/taskmesh/identity/v1/identity";
import { freePort } from "@taskmesh/local/secrets";
import { ensureBootstrapKey, migrations } from "../../../services/identity/src/index.js";
import { createClient, createLogger, createPool, migrate } from "@taskmesh/kit";
import { createTestDatabase, type TestDatabase } from "../../support/postgres.js";
import { startService, waitForServing } from "../../support/processes.js";

describe("identity: the process and its bootstrap key", () => {
  const dir = mkdtempSync(join(tmpdir(), "identity-bootstrap-"));
  const databases: TestDatabase[] = [];
  const kek = randomBytes(32).toString("base64");

  afterAll(async () => {
    for (const db of databases) await db.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  const database = async (label: string) => {
    const db = await createTestDatabase(label);
    databases.push(db);
    return db;
  };

  const activeBootstrapKeys = async (url: string) => {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      return (await c.query<{ id: string }>("SELECT id FROM identity.api_keys WHERE name = 'bootstrap' AND revoked_at IS NULL")).rows;
    } finally {
      await c.end();
    }
  };

  it("exits 2 naming the variable when the key-encryption key is missing or bad", async () => {
    const missing = startService("identity", { DATABASE_URL: "postgres://u:p@127.0.0.1:1/x", TASKMESH_LISTEN: "127.0.0.1:0", TASKMESH_IDENTITY_KEK: "" });
    expect(await missing.exited).toBe(2);
    expect(missing.output()).toMatch(/identity: bad environment: TASKMESH_IDENTITY_KEK: required/);
    const short = startService("identity", { DATABASE_URL: "postgres://u:p@127.0.0.1:1/x", TASKMESH_IDENTITY_KEK: randomBytes(16).toString("base64"), TASKMESH_IDENTITY_ACCESS_TTL: "soon" });
    expect(await short.exited).toBe(2);
    expect(short.output()).toMatch(/TASKMESH_IDENTITY_KEK: expected base64 of 32/);
    expect(short.output()).toMatch(/TASKMESH_IDENTITY_ACCESS_TTL: expected a duration/);
  });

  it("creates the bootstrap key file (0600, folder 0700) at first start and keeps it at the next; its key is an admin key", async () => {
    const db = await database("identity_process");
    const file = join(dir, "secrets", "bootstrap.key");
    // Spans go to the console and logs are at debug level, so the output can be searched for secrets.
    const env = { DATABASE_URL: db.url, TASKMESH_IDENTITY_KEK: kek, TASKMESH_BOOTSTRAP_KEY_FILE: file, OTEL_TRACES_EXPORTER: "console", OTEL_BSP_SCHEDULE_DELAY: "100", LOG_LEVEL: "debug" };
    const handedOut: string[] = [];
    const run = async (check: (address: string) => Promise<void>) => {
      const address = `127.0.0.1:${await freePort()}`;
      const proc = startService("identity", { ...env, TASKMESH_LISTEN: address });
      try {
        await waitForServing(address, proc, 30_000);
        await check(address);
      } finally {
        proc.child.kill("SIGTERM");
        expect(await proc.exited).toBe(0);
      }
      return proc.output();
    };
    let secret = "";
    const firstLog = await run(async (address) => {
      expect(statSync(file).mode & 0o777).toBe(0o600);
      expect(statSync(join(dir, "secrets")).mode & 0o777).toBe(0o700);
      secret = readFileSync(file, "utf8").trim();
      expect(secret).toMatch(/^tmk_/);
      const client = createClient(IdentityServiceService, address);
      try {
        const issued = await client.issueToken({ apiKey: secret, scopes: [] });
        expect(issued.scopes).toEqual(["admin"]);
        expect((await client.getJwks({})).keys).toHaveLength(1);
        const created = await client.createApiKey({ name: "traced", scopes: ["worker"], subject: "", ttl: undefined });
        const pair = await client.issueToken({ apiKey: created.secret, scopes: [] });
        const next = await client.refreshToken({ refreshToken: pair.refreshToken, scopes: [] });
        await client.refreshToken({ refreshToken: pair.refreshToken, scopes: [] }).catch(() => undefined);
        await client.issueToken({ apiKey: `${created.secret.slice(0, -2)}xx`, scopes: [] }).catch(() => undefined);
        await client.revokeToken({ target: { $case: "token", value: next.accessToken }, reason: "" });
        handedOut.push(issued.accessToken, issued.refreshToken, created.secret, pair.accessToken, pair.refreshToken, next.accessToken, next.refreshToken, `${created.secret.slice(0, -2)}xx`);
      } finally {
        client.close();
      }
    });
    // the output has the spans of those calls, with their SQL, and no secret or token
    expect(firstLog).toContain("IssueToken");
    expect(firstLog).toContain("identity.refresh_tokens");
    for (const s of [secret, ...handedOut]) expect(firstLog).not.toContain(s);
    // audit rows carry the trace of their request
    const c = new pg.Client({ connectionString: db.url });
    await c.connect();
    try {
      const { rows } = await c.query<{ trace_id: string; traceparent: string }>("SELECT trace_id, traceparent FROM identity.audit WHERE action = 1 AND outcome = 1");
      expect(rows.length).toBeGreaterThanOrEqual(2);
      for (const row of rows) {
        expect(row.trace_id).toMatch(/^[0-9a-f]{32}$/);
        expect(row.traceparent).toContain(row.trace_id);
        expect(firstLog).toContain(row.trace_id);
      }
    } finally {
      await c.end();
    }
    const secondLog = await run(async () => {
      expect(readFileSync(file, "utf8").trim()).toBe(secret);
    });
    expect(secondLog).not.toContain(secret);
    expect(await activeBootstrapKeys(db.url)).toHaveLength(1);

    // A lost secret: the next start revokes the old bootstrap key and writes a new one.
    writeFileSync(file, "tmk_lost\n", { mode: 0o600 });
    await run(async () => undefined);
    const replaced = readFileSync(file, "utf8").trim();
    expect(replaced).not.toBe(secret);
    expect(replaced).toMatch(/^tmk_/);
    expect(await activeBootstrapKeys(db.url)).toHaveLength(1);
  }, 90_000);

  it("creates one bootstrap key when replicas start together", async () => {
    const db = await database("identity_bootstrap_race");
    const logger = createLogger({ level: "silent" });
    const pools = [0, 1, 2].map(() => createPool({ url: db.url, applicationName: "bootstrap-race", logger, max: 2 }));
    try {
      await migrate(pools[0]!, "identity", migrations, logger);
      const file = join(dir, "race", "bootstrap.key");
      const outcomes = await Promise.all(pools.map((pool) => ensureBootstrapKey(pool, file, logger)));
      expect(outcomes.sort()).toEqual(["created", "kept", "kept"]);
      expect(await activeBootstrapKeys(db.url)).toHaveLength(1);
      expect(statSync(file).mode & 0o777).toBe(0o600);
    } finally {
      await Promise.all(pools.map((p) => p.end()));
    }
  });
});
