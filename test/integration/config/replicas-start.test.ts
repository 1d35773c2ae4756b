import { afterAll, beforeAll, describe, expect, it } from "vitest";
import pg from "pg";
import { startConfigReplica, type ConfigReplica } from "../../support/config-server.js";
import { createTestDatabase, type TestDatabase } from "../../support/postgres.js";

describe("config replicas starting together on an empty database", () => {
  let db: TestDatabase;
  const replicas: ConfigReplica[] = [];

  beforeAll(async () => {
    db = await createTestDatabase("config_replicas_start");
  });

  afterAll(async () => {
    for (const replica of replicas) await replica.stop();
    if (db) {
      const until = Date.now() + 5000;
      while ((await db.openConnections()) > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
      expect(await db.openConnections()).toBe(0);
      await db.drop();
    }
  });

  it("all come up: the schema is migrated once, and each serves the others' writes", async () => {
    replicas.push(...(await Promise.all([1, 2, 3].map((n) => startConfigReplica(db.url, `config-start-${n}`)))));
    const admin = new pg.Client({ connectionString: db.url });
    await admin.connect();
    try {
      expect((await admin.query("SELECT id FROM config.schema_migrations")).rows).toEqual([{ id: "0001_init" }]);
    } finally {
      await admin.end();
    }
    const [a, b, c] = replicas as [ConfigReplica, ConfigReplica, ConfigReplica];
    const written = await a.client.put({ key: "/start/k", value: "from a", expectedRevision: 0n });
    expect(written.entry?.revision).toBe(1n);
    expect((await b.client.get({ key: "/start/k" })).entry?.value).toBe("from a");
    expect((await c.client.list({ prefix: "/start/", pageSize: 0, pageToken: "" })).entries.map((e) => e.key)).toEqual(["/start/k"]);
  });
});
