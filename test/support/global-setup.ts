import { randomBytes } from "node:crypto";
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestProject } from "vitest/node";
import { postgresSpec, postgresUrl } from "../../deploy/local/provision/postgres.js";
import { freePort } from "../../deploy/local/secrets.js";
import { Supervisor } from "../../deploy/local/supervisor.js";

declare module "vitest" {
  export interface ProvidedContext {
    /** URL of a Postgres server's `postgres` database; each test file makes its own database on it. */
    postgresAdminUrl: string;
  }
}

/**
 * Brings the real infrastructure up once per test run, with the same
 * supervisor and process specs as `taskmesh up`, and shares it with every
 * test file: Postgres on a free port in a temporary directory (or, when
 * DATABASE_URL is set, that server: its role must be allowed to create
 * databases). Torn down at the end, also when tests fail.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const external = process.env.DATABASE_URL;
  if (external) {
    project.provide("postgresAdminUrl", external);
    return async () => undefined;
  }
  // Under the system temp dir: as root, Postgres runs as user `postgres`, which must reach its data directory.
  const dir = mkdtempSync(join(tmpdir(), "taskmesh-test-"));
  chmodSync(dir, 0o755); // mkdtemp makes it 0700: the postgres user could not enter it
  const supervisor = new Supervisor({ logDir: join(dir, "logs"), restart: false });
  const teardown = async (): Promise<void> => {
    await supervisor.stop();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const pg = { dataDir: join(dir, "postgres"), port: await freePort(), password: randomBytes(18).toString("base64url"), database: "postgres" };
    await supervisor.start([await postgresSpec(pg)]);
    project.provide("postgresAdminUrl", postgresUrl(pg, "postgres"));
  } catch (error) {
    await teardown();
    throw error;
  }
  return teardown;
}
