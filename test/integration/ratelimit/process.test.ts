import { describe, expect, inject, it } from "vitest";
import { checkHealth } from "@taskmesh/local/health";
import { freePort } from "@taskmesh/local/secrets";
import { startService } from "../../support/processes.js";
import { OK, startRatelimit } from "./support.js";

const SERVICE = "envoy.service.ratelimit.v3.RateLimitService";

describe("the ratelimit process", () => {
  it("exits 2 naming the variable when its environment is bad", async () => {
    const proc = startService("ratelimit", { REDIS_URL: "redis://127.0.0.1:1", TASKMESH_UPSTREAM_CONFIG: "127.0.0.1:1", TASKMESH_RATELIMIT_FAILURE_MODE: "maybe" });
    expect(await proc.exited).toBe(2);
    expect(proc.output()).toMatch(/ratelimit: bad environment: TASKMESH_RATELIMIT_FAILURE_MODE/);
    const noConfig = startService("ratelimit", { REDIS_URL: "redis://127.0.0.1:1", TASKMESH_UPSTREAM: "", TASKMESH_UPSTREAM_CONFIG: "" });
    expect(await noConfig.exited).toBe(2);
    expect(noConfig.output()).toMatch(/TASKMESH_UPSTREAM: required to reach config/);
  }, 60_000);

  it("stays NOT_SERVING while the limits cannot be read from config, and exits 0 on SIGTERM", async () => {
    const address = `127.0.0.1:${await freePort()}`;
    const proc = startService("ratelimit", { REDIS_URL: inject("redisUrl"), TASKMESH_LISTEN: address, TASKMESH_UPSTREAM_CONFIG: `127.0.0.1:${await freePort()}` });
    try {
      let status = "UNREACHABLE";
      const until = Date.now() + 30_000; // a cold start under load takes seconds
      while (status === "UNREACHABLE" && Date.now() < until) status = await checkHealth(address, SERVICE);
      expect(status).toBe("NOT_SERVING");
      await new Promise((r) => setTimeout(r, 500));
      expect(proc.child.exitCode).toBeNull();
      expect(await checkHealth(address, SERVICE)).toBe("NOT_SERVING");
    } finally {
      proc.child.kill("SIGTERM");
      expect(await proc.exited).toBe(0);
    }
  }, 60_000);

  it("serves while Redis is unreachable from the start, answering per the failure mode", async () => {
    const stack = await startRatelimit("ratelimit_process", `redis://127.0.0.1:${await freePort()}`);
    try {
      await stack.put("/ratelimit/limits", { all: { descriptor: [{ key: "subject" }], requests: 1, per: "minute" } });
      for (let i = 0; i < 3; i++) expect((await stack.ask("alice")).overallCode).toBe(OK);
    } finally {
      await stack.stop();
    }
  });
});
