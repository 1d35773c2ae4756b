import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { ensureRedis, pingRedis, redisSpec } from "@taskmesh/local/provision/redis";
import { freePort } from "@taskmesh/local/secrets";
import { runProcess, type RunningProcess } from "@taskmesh/local/supervisor";

// One real redis-server on a free port in a temporary directory, run by the supervisor.
const dir = mkdtempSync(join(tmpdir(), "taskmesh-test-redis-"));
const dataDir = join(dir, "data");
const logDir = join(dir, "logs");
const prefix = `test:redis:${randomBytes(3).toString("hex")}:`;
let port: number;
let running: RunningProcess | undefined;
const clients: Redis[] = [];

function client(): Redis {
  const c = new Redis({ host: "127.0.0.1", port, keyPrefix: prefix, maxRetriesPerRequest: 1, retryStrategy: () => null, lazyConnect: true });
  clients.push(c);
  return c;
}

async function start(): Promise<number> {
  const t = Date.now();
  running = await runProcess(redisSpec({ dataDir, port, logDir }), { logDir });
  return Date.now() - t;
}

beforeAll(async () => {
  const t = Date.now();
  await ensureRedis();
  const provisionMs = Date.now() - t;
  port = await freePort();
  const startMs = await start();
  console.info(`redis: provisioning ${provisionMs} ms, start ${startMs} ms`);
});

afterAll(async () => {
  for (const c of clients) c.disconnect();
  await running?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe("redis (local runtime)", () => {
  it("answers PING on 127.0.0.1 and sets, gets and increments keys", async () => {
    expect(await pingRedis(port)).toBe(true);
    const redis = client();
    await redis.connect();
    expect(await redis.set("greeting", "hello")).toBe("OK");
    expect(await redis.get("greeting")).toBe("hello");
    expect(await redis.incr("counter")).toBe(1);
    expect(await redis.incrby("counter", 41)).toBe(42);
    // The prefix is applied to every key this file writes.
    const raw = new Redis({ host: "127.0.0.1", port, lazyConnect: true, retryStrategy: () => null });
    clients.push(raw);
    await raw.connect();
    expect(await raw.get(`${prefix}greeting`)).toBe("hello");
    expect(await raw.config("GET", "appendonly")).toEqual(["appendonly", "yes"]);
    expect(await raw.config("GET", "save")).toEqual(["save", ""]);
    expect(await raw.config("GET", "bind")).toEqual(["bind", "127.0.0.1"]);
    await redis.quit();
    await raw.quit();
  });

  it("keeps its data in the append-only file across a restart on the same data directory", async () => {
    const before = client();
    await before.connect();
    await before.set("durable", "still here");
    await before.incrby("durable:count", 7);
    await before.quit();

    const pid = running!.pid();
    await running!.stop();
    expect(running!.pid()).toBeUndefined();
    expect(pid).toBeDefined();
    expect(existsSync(join(dataDir, "appendonlydir"))).toBe(true);
    expect(readdirSync(join(dataDir, "appendonlydir")).some((f) => f.endsWith(".aof"))).toBe(true);
    expect(await pingRedis(port)).toBe(false);

    const restartMs = await start();
    console.info(`redis: restart ${restartMs} ms`);
    const after = client();
    await after.connect();
    expect(await after.get("durable")).toBe("still here");
    expect(await after.get("durable:count")).toBe("7");
    await after.quit();
  });
});

describe("the run's shared redis (started once by the global setup)", () => {
  it("answers every test file, each keeping to a key prefix of its own", async () => {
    const url = inject("redisUrl");
    const mine = new Redis(url, { keyPrefix: prefix, lazyConnect: true, retryStrategy: () => null });
    const other = new Redis(url, { keyPrefix: `${prefix}other:`, lazyConnect: true, retryStrategy: () => null });
    clients.push(mine, other);
    await Promise.all([mine.connect(), other.connect()]);
    await mine.set("k", "mine");
    await other.set("k", "theirs");
    expect([await mine.get("k"), await other.get("k")]).toEqual(["mine", "theirs"]);
    await Promise.all([mine.quit(), other.quit()]);
  });
});
