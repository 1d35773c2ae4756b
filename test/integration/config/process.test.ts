import { describe, expect, it } from "vitest";
import { ConfigServiceService } from "@taskmesh/contracts/gen/taskmesh/config/v1/config";
import { freePort } from "@taskmesh/local/secrets";
import { checkHealth } from "@taskmesh/local/health";
import { createClient } from "@taskmesh/kit";
import { createTestDatabase } from "../../support/postgres.js";
import { startService, waitForServing } from "../../support/processes.js";

describe("the config process", () => {
  it("exits 2 naming the variable when its environment is bad", async () => {
    const proc = startService("config", { DATABASE_URL: "not-a-url", TASKMESH_LISTEN: "127.0.0.1:0" });
    expect(await proc.exited).toBe(2);
    expect(proc.output()).toMatch(/config: bad environment: DATABASE_URL: expected a postgres or postgresql URL/);
  });

  it("waits NOT_SERVING while Postgres is unreachable instead of crashing", async () => {
    const address = `127.0.0.1:${await freePort()}`;
    const proc = startService("config", { DATABASE_URL: `postgres://u:p@127.0.0.1:${await freePort()}/none`, TASKMESH_LISTEN: address });
    try {
      let status = "UNREACHABLE";
      const until = Date.now() + 60_000; // starting compiles TypeScript: slow while the suite loads both cores
      while (status === "UNREACHABLE" && Date.now() < until) status = await checkHealth(address);
      expect(status).toBe("NOT_SERVING");
      await new Promise((r) => setTimeout(r, 500));
      expect(proc.child.exitCode).toBeNull();
      expect(await checkHealth(address)).toBe("NOT_SERVING");
    } finally {
      proc.child.kill("SIGTERM");
      expect(await proc.exited).toBe(0);
    }
  }, 90_000);

  it("serves once ready, and on SIGTERM drains and exits 0", async () => {
    const db = await createTestDatabase("config_process");
    const address = `127.0.0.1:${await freePort()}`;
    const proc = startService("config", { DATABASE_URL: db.url, TASKMESH_LISTEN: address });
    try {
      await waitForServing(address, proc);
      const client = createClient(ConfigServiceService, address);
      await client.put({ key: "/p", value: "v", expectedRevision: undefined });
      expect((await client.get({ key: "/p" })).entry?.value).toBe("v");
      client.close();
    } finally {
      proc.child.kill("SIGTERM");
      expect(await proc.exited).toBe(0);
      await db.drop();
    }
  });
});
