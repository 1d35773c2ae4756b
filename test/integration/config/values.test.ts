import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, type MeshError } from "@taskmesh/kit";
import { startConfigReplica, type ConfigReplica } from "../../support/config-server.js";
import { createTestDatabase, type TestDatabase } from "../../support/postgres.js";

// The documented limits of keys and values, at their exact edges, and values
// that survive the trip client → protobuf Value → Postgres jsonb → client.

const failure = (p: Promise<unknown>): Promise<MeshError> => p.then(() => { throw new Error("expected the call to fail"); }, (e: unknown) => e as MeshError);

describe("config keys and values at their limits, on Postgres", () => {
  let db: TestDatabase;
  let config: ConfigReplica;
  const put = (key: string, value: unknown) => config.client.put({ key, value, expectedRevision: undefined });
  const storeRevision = async () => (await config.client.list({ prefix: "/", pageSize: 1, pageToken: "" })).revision;

  beforeAll(async () => {
    db = await createTestDatabase("config_values");
    config = await startConfigReplica(db.url, "config-values");
  });

  afterAll(async () => {
    await config?.stop();
    if (db) {
      expect(await db.openConnectionsAfter(5000)).toBe(0);
      await db.drop();
    }
  });

  it("reads back numbers, text and empty containers exactly as written", async () => {
    const values: Array<[string, unknown]> = [
      ["/exact/fraction", 0.1],
      ["/exact/max-safe", Number.MAX_SAFE_INTEGER],
      ["/exact/min-safe", Number.MIN_SAFE_INTEGER],
      ["/exact/big", 1e21],
      ["/exact/tiny", 5e-324],
      ["/exact/huge-negative", -1.5e300],
      ["/exact/unicode", "Grüße, 世界 🚀 \"quoted\" \\ back\tslash\n"],
      ["/exact/empties", { list: [], object: {}, text: "" }],
    ];
    for (const [key, value] of values) await put(key, value);
    for (const [key, value] of values) expect((await config.client.get({ key })).entry?.value, key).toEqual(value);
  });

  it("takes a value of exactly 64 KiB of JSON and refuses one byte more, counting bytes, not characters", async () => {
    const ok = await put("/limits/value", "x".repeat(64 * 1024 - 2)); // two bytes of quotes
    expect((ok.entry!.value as string).length).toBe(64 * 1024 - 2);
    const before = await storeRevision();
    for (const value of ["x".repeat(64 * 1024 - 1), "é".repeat(32 * 1024)]) {
      const e = await failure(put("/limits/value", value));
      expect(e).toMatchObject({ code: Code.INVALID_ARGUMENT, reason: "VAL_INVALID_VALUE", violations: [{ field: "value" }] });
    }
    expect(await storeRevision()).toBe(before);
    expect(((await config.client.get({ key: "/limits/value" })).entry!.value as string).length).toBe(64 * 1024 - 2);
  });

  it("takes a key of exactly 256 bytes, with or without its leading slash, and refuses 257", async () => {
    const longest = `/${"k".repeat(255)}`;
    expect((await put(longest, 1)).entry?.key).toBe(longest);
    expect((await put(longest.slice(1), 2)).entry).toMatchObject({ key: longest, version: 2n });
    const e = await failure(put(`/${"k".repeat(256)}`, 1));
    expect(e).toMatchObject({ code: Code.INVALID_ARGUMENT, reason: "VAL_INVALID_KEY", violations: [{ field: "key" }] });
  });

  it("keeps text that only spells an escape, such as a backslash followed by u0000", async () => {
    const value = { "C:\\u0000": "JSON writes NUL as \\u0000", list: ["\\\\u0000"] };
    await put("/limits/spelled-escape", value);
    expect((await config.client.get({ key: "/limits/spelled-escape" })).entry?.value).toEqual(value);
  });

  // Regression: jsonb cannot hold U+0000 (SQLSTATE 22P05); such writes used to fail as INTERNAL.
  it("refuses a text holding U+0000, which Postgres cannot store, as an invalid value", async () => {
    for (const value of ["a\u0000b", { "nul\u0000key": 1 }]) {
      const e = await failure(put("/limits/nul", value));
      expect({ code: e.code, reason: e.reason, fields: e.violations.map((v) => v.field) })
        .toEqual({ code: Code.INVALID_ARGUMENT, reason: "VAL_INVALID_VALUE", fields: ["value"] });
    }
  });
});
