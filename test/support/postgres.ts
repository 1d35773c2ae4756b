import { randomBytes } from "node:crypto";
import pg from "pg";
import { inject } from "vitest";

/** A database of its own for one test file, dropped by `drop()`. */
export interface TestDatabase {
  readonly url: string;
  /** Connections still open to it besides the dropper (leak check). */
  openConnections(): Promise<number>;
  /** The connections still open once they have had up to `timeoutMs` to close (0 when all closed in time). */
  openConnectionsAfter(timeoutMs?: number): Promise<number>;
  drop(): Promise<void>;
}

function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

/** Creates a fresh database on the run's Postgres, named after `label`. */
export async function createTestDatabase(label: string): Promise<TestDatabase> {
  const adminUrl = inject("postgresAdminUrl");
  const name = `t_${label.replace(/[^a-z0-9]/gi, "_").toLowerCase().slice(0, 40)}_${randomBytes(4).toString("hex")}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`);
  await admin.end();
  const count = async (): Promise<number> => {
    const c = new pg.Client({ connectionString: adminUrl });
    await c.connect();
    try {
      const { rows } = await c.query<{ n: string }>("SELECT count(*) AS n FROM pg_stat_activity WHERE datname = $1", [name]);
      return Number(rows[0]!.n);
    } finally {
      await c.end();
    }
  };
  return {
    url: withDatabase(adminUrl, name),
    openConnections: count,
    async openConnectionsAfter(timeoutMs = 5000) {
      const until = Date.now() + timeoutMs;
      let open = await count();
      while (open > 0 && Date.now() < until) {
        await new Promise((r) => setTimeout(r, 50));
        open = await count();
      }
      return open;
    },
    async drop() {
      const c = new pg.Client({ connectionString: adminUrl });
      await c.connect();
      try {
        await c.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`);
      } finally {
        await c.end();
      }
    },
  };
}
