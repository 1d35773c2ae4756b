import type pg from "pg";
import type { Logger } from "pino";
import { withTransaction } from "./pool.js";

/** One migration: an id that sorts in order (`0001_init`) and its SQL. */
export interface Migration {
  readonly id: string;
  readonly sql: string;
}

/**
 * Applies the migrations of `schema` that have not run yet, in order, in one
 * transaction under a transaction-level advisory lock, so replicas starting
 * together apply each migration exactly once. Returns the ids applied.
 */
export async function migrate(pool: pg.Pool, schema: string, migrations: readonly Migration[], logger: Logger): Promise<string[]> {
  if (!/^[a-z_][a-z0-9_]*$/.test(schema)) throw new TypeError(`bad schema name ${schema}`);
  const ids = migrations.map((m) => m.id);
  if (new Set(ids).size !== ids.length || ids.some((id, i) => i > 0 && id <= ids[i - 1]!)) {
    throw new TypeError(`migrations of ${schema} must have unique ids in ascending order`);
  }
  return withTransaction(pool, async (client) => {
    await client.query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", [`taskmesh:migrate:${schema}`]);
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
    await client.query(`CREATE TABLE IF NOT EXISTS ${schema}.schema_migrations (
      id text PRIMARY KEY,
      applied_at timestamptz NOT NULL DEFAULT now()
    )`);
    const done = new Set((await client.query<{ id: string }>(`SELECT id FROM ${schema}.schema_migrations`)).rows.map((r) => r.id));
    const applied: string[] = [];
    for (const migration of migrations) {
      if (done.has(migration.id)) continue;
      await client.query(migration.sql);
      await client.query(`INSERT INTO ${schema}.schema_migrations (id) VALUES ($1)`, [migration.id]);
      applied.push(migration.id);
    }
    if (applied.length > 0) logger.info({ schema, applied }, "migrations applied");
    return applied;
  });
}
