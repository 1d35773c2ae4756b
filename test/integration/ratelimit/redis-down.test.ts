import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pingRedis, redisSpec, redisUrl } from "@taskmesh/local/provision/redis";
import { freePort } from "@taskmesh/local/secrets";
import { runProcess, type RunningProcess } from "@taskmesh/local/supervisor";
import { OK, OVER_LIMIT, eventually, refusalOf, startRatelimit, type RatelimitStack } from "./support.js";

// A redis-server of this file's own, stopped and started again by the tests.
const dir = mkdtempSync(join(tmpdir(), "taskmesh-test-ratelimit-redis-"));
let port: number;
let redis: RunningProcess | undefined;

async function startRedis(): Promise<void> {
  redis = await runProcess(redisSpec({ dataDir: join(dir, "data"), port, logDir: join(dir, "logs") }), { logDir: join(dir, "logs") });
}

async function stopRedis(): Promise<void> {
  await redis?.stop();
  redis = undefined;
  expect(await pingRedis(port)).toBe(false);
}

/** One answer and how long it took. */
async function timed<T>(call: () => Promise<T>): Promise<[T, number]> {
  const t = performance.now();
  const result = await call();
  return [result, performance.now() - t];
}

describe("ratelimit while Redis is down", () => {
  let stack: RatelimitStack;

  beforeAll(async () => {
    port = await freePort();
    await startRedis();
    stack = await startRatelimit("ratelimit_redis_down", redisUrl(port), { LOG_LEVEL: "info", TASKMESH_RATELIMIT_REDIS_TIMEOUT: "100ms" });
    await stack.put("/ratelimit/limits", { "per-subject": { descriptor: [{ key: "subject" }], requests: 2, per: "minute" } });
    await eventually(async () => expect((await stack.ask("probe")).statuses[0]?.currentLimit?.name).toBe("per-subject"));
  });

  afterAll(async () => {
    await stack?.stop();
    await redis?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("counts while Redis is up", async () => {
    expect((await stack.ask("alice")).overallCode).toBe(OK);
    expect((await stack.ask("alice")).statuses[0]!.limitRemaining).toBe(0);
    expect((await stack.ask("alice")).overallCode).toBe(OVER_LIMIT);
  });

  it("answers within its Redis timeout when Redis hangs, and counts again when it wakes", async () => {
    const pid = redis!.pid()!;
    process.kill(pid, "SIGSTOP");
    try {
      const [answer, took] = await timed(() => stack.ask("erin"));
      expect(answer.overallCode).toBe(OK);
      expect(answer.statuses[0]!.currentLimit).toBeUndefined();
      expect(took).toBeLessThan(500);
    } finally {
      process.kill(pid, "SIGCONT");
    }
    await eventually(async () => expect((await stack.ask("frank")).statuses[0]!.limitRemaining).toBe(1));
  });

  it("fails open (the default) quickly: every request is admitted, without a limit to report", async () => {
    await stopRedis();
    for (let i = 0; i < 5; i++) {
      const [answer, took] = await timed(() => stack.ask("alice"));
      expect(answer.overallCode).toBe(OK);
      expect(answer.statuses[0]!.currentLimit).toBeUndefined();
      expect(took).toBeLessThan(500);
    }
    await eventually(() => expect(stack.proc.output()).toContain("redis unavailable: answering per the failure mode"));
  });

  it("fails closed when config says so: every limited request is refused with a retry", async () => {
    await stack.put("/ratelimit/failure_mode", "closed");
    const answer = await eventually(async () => {
      const a = await stack.ask("bob");
      expect(a.overallCode).toBe(OVER_LIMIT);
      return a;
    });
    expect(answer.statuses[0]!.currentLimit?.name).toBe("per-subject");
    const { error, retryAfter } = refusalOf(answer);
    expect(error.reason).toBe("RATE_LIMITER_UNAVAILABLE");
    expect(error.retryAfterMs).toBe(1000);
    expect(retryAfter).toBe("1");
    const [, took] = await timed(() => stack.ask("bob"));
    expect(took).toBeLessThan(500);
  });

  it("resumes counting when Redis is back, with the counts it held", async () => {
    await startRedis();
    // Counting again: a new subject gets its full budget, counted.
    const carol = await eventually(async () => {
      const a = await stack.ask("carol");
      expect(a.statuses[0]!.limitRemaining).toBe(1);
      return a;
    }, 10_000);
    expect(carol.overallCode).toBe(OK);
    // Alice's hits from before the outage are still in her window.
    expect((await stack.ask("alice")).overallCode).toBe(OVER_LIMIT);
    expect(stack.proc.output()).toContain("redis is back: counting resumed");
  });
});
