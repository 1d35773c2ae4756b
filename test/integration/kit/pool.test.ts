import pg from "pg";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPool, query, withTransaction } from "../../../packages/kit/src/pg/pool.js";
import { createTestDatabase, type TestDatabase } from "../../support/postgres.js";

const log = pino({ level: "silent" });
/** Long enough that a statement still sleeping after the aborts was never cancelled. */
const SLEEP_S = 20;

/** Statements of this test still sleeping on the server, seen from a connection outside the pool. */
async function sleepersRunning(db: TestDatabase): Promise<number> {
  const c = new pg.Client({ connectionString: db.url });
  await c.connect();
  try {
    const { rows } = await c.query<{ n: string }>(
      "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND state = 'active' AND query LIKE 'SELECT pg_sleep%'");
    return Number(rows[0]!.n);
  } finally {
    await c.end();
  }
}

describe("kit pg pool: cancelling on abort", () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase("kit_pool");
  });
  afterAll(async () => {
    expect(await db.openConnectionsAfter(5000)).toBe(0);
    await db.drop();
  });

  it("cancels the statements of aborted transactions and queries on the server even when they hold every connection of the pool", async () => {
    const pool = createPool({ url: db.url, applicationName: "kit-pool-test", max: 2, logger: log });
    try {
      const aborts = [new AbortController(), new AbortController()];
      const calls = [
        withTransaction(pool, (client) => client.query(`SELECT pg_sleep(${SLEEP_S})`), { signal: aborts[0]!.signal }),
        query(pool, `SELECT pg_sleep(${SLEEP_S})`, [], aborts[1]!.signal),
      ].map((p) => p.then(() => "resolved", (e: unknown) => (e instanceof Error ? e.message : String(e))));
      // Both connections are busy sleeping.
      for (let i = 0; i < 100 && (await sleepersRunning(db)) < 2; i++) await new Promise((r) => setTimeout(r, 50));
      expect(await sleepersRunning(db)).toBe(2);
      for (const a of aborts) a.abort(new Error("caller gave up"));
      // Each call fails with its abort reason, and neither statement is left running.
      expect(await Promise.all(calls)).toEqual(["caller gave up", "caller gave up"]);
      expect(await sleepersRunning(db)).toBe(0);
      // The pool serves again.
      expect((await pool.query<{ one: number }>("SELECT 1 AS one")).rows[0]!.one).toBe(1);
    } finally {
      await pool.end();
    }
  }, 60_000);
});
