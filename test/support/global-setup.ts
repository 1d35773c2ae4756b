import { randomBytes } from "node:crypto";
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestProject } from "vitest/node";
import { ensureEnvoy } from "@taskmesh/local/provision/envoy";
import { ensureJaeger } from "@taskmesh/local/provision/jaeger";
import { ensureKafka, kafkaSpec } from "@taskmesh/local/provision/kafka";
import { postgresSpec, postgresUrl } from "@taskmesh/local/provision/postgres";
import { ensureRedis, redisSpec, redisUrl } from "@taskmesh/local/provision/redis";
import { freePort } from "@taskmesh/local/secrets";
import { Supervisor } from "@taskmesh/local/supervisor";

declare module "vitest" {
  export interface ProvidedContext {
    /** URL of a Postgres server's `postgres` database; each test file makes its own database on it. */
    postgresAdminUrl: string;
    /** The shared Redis; each test file uses a key prefix of its own. */
    redisUrl: string;
    /** The shared Kafka broker's bootstrap address; each test file uses a topic prefix of its own. */
    kafkaBrokers: string;
  }
}

/**
 * Brings the real infrastructure up once per test run, with the same
 * supervisor and process specs as `taskmesh up`, and shares it with every
 * test file: Postgres, Redis and Kafka on free ports in a temporary directory
 * (with DATABASE_URL set, that Postgres instead: its role must be allowed to
 * create databases). Provisions every pinned component first (the first run
 * on a machine builds Jaeger and fetches Kafka and Envoy: minutes; later runs:
 * nothing). Torn down at the end, also when tests fail.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const t0 = Date.now();
  await Promise.all([ensureJaeger(), ensureEnvoy(), ensureKafka(), ensureRedis()]);
  const provisionedMs = Date.now() - t0;
  if (provisionedMs > 5000) console.info(`taskmesh tests: provisioned Jaeger, Envoy, Kafka and Redis in ${(provisionedMs / 1000).toFixed(0)} s (cached from now on)`);

  // Under the system temp dir, entered by all: as root, Postgres runs as user `postgres`.
  const dir = mkdtempSync(join(tmpdir(), "taskmesh-test-"));
  chmodSync(dir, 0o755);
  const supervisor = new Supervisor({ logDir: join(dir, "logs"), restart: false });
  const teardown = async (): Promise<void> => {
    await supervisor.stop();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const external = process.env.DATABASE_URL;
    const pg = { dataDir: join(dir, "postgres"), port: await freePort(), password: randomBytes(18).toString("base64url"), database: "postgres" };
    const redisPort = await freePort();
    const kafkaPort = await freePort();
    await supervisor.start([
      ...(external ? [] : [await postgresSpec(pg)]),
      redisSpec({ dataDir: join(dir, "redis"), port: redisPort }),
      kafkaSpec({ dataDir: join(dir, "kafka"), logDir: join(dir, "logs"), port: kafkaPort, controllerPort: await freePort() }),
    ]);
    project.provide("postgresAdminUrl", external ?? postgresUrl(pg, "postgres"));
    project.provide("redisUrl", redisUrl(redisPort));
    project.provide("kafkaBrokers", `127.0.0.1:${kafkaPort}`);
  } catch (error) {
    await teardown();
    throw error;
  }
  return teardown;
}
