import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigServiceService } from "@taskmesh/contracts/gen/taskmesh/config/v1/config";
import { freePort } from "@taskmesh/local/secrets";
import { connectUpstream, createLogger, watchSetting, type ConfigClient, type LiveSetting } from "@taskmesh/kit";
import { createTestDatabase, type TestDatabase } from "../../support/postgres.js";
import { startService, waitForServing, type ServiceProcess } from "../../support/processes.js";

const KEY = "/coordinator/dispatch/strategy";
const STRATEGIES = ["round_robin", "least_loaded", "random", "latency"] as const;
type Strategy = (typeof STRATEGIES)[number];

function parseStrategy(value: unknown): Strategy {
  if (typeof value !== "string" || !(STRATEGIES as readonly string[]).includes(value)) throw new Error(`unknown strategy ${JSON.stringify(value)}`);
  return value as Strategy;
}

async function eventually(check: () => void, timeoutMs = 5000): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    try {
      return check();
    } catch (error) {
      if (Date.now() > until) throw error;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

describe("watchSetting: a service follows a config key live", () => {
  let db: TestDatabase;
  let address: string;
  let proc: ServiceProcess;
  let client: ConfigClient;
  let setting: LiveSetting<Strategy>;
  const changes: Array<[Strategy, Strategy]> = [];

  const put = (value: unknown, key = KEY) => client.put({ key, value, expectedRevision: undefined }, { waitForReady: true });

  beforeAll(async () => {
    db = await createTestDatabase("watch_setting");
    address = `127.0.0.1:${await freePort()}`;
    proc = startService("config", { DATABASE_URL: db.url, TASKMESH_LISTEN: address });
    await waitForServing(address, proc);
    client = connectUpstream(ConfigServiceService, "config", {}, { TASKMESH_UPSTREAM_CONFIG: address });
    setting = watchSetting(client, {
      key: KEY,
      parse: parseStrategy,
      fallback: "round_robin",
      onChange: (value, previous) => changes.push([value, previous]),
      logger: createLogger({ level: "silent" }),
      maxBackoffMs: 200,
    });
  });

  afterAll(async () => {
    setting?.close();
    client?.close();
    proc?.child.kill("SIGTERM");
    await proc?.exited;
    await db?.drop();
  });

  it("starts from the fallback while the key is absent", async () => {
    await setting.ready;
    expect(setting.get()).toBe("round_robin");
  });

  it("applies a write as soon as it commits, and reports the change", async () => {
    await put("least_loaded");
    await eventually(() => expect(setting.get()).toBe("least_loaded"));
    expect(changes).toEqual([["least_loaded", "round_robin"]]);
  });

  it("keeps the last good value when an invalid one is written, and ignores other keys under it", async () => {
    await put(42);
    await put("random", `${KEY}-canary`);
    await put("latency", `${KEY}/nested`);
    await new Promise((r) => setTimeout(r, 300));
    expect(setting.get()).toBe("least_loaded");
    expect(changes).toHaveLength(1);
  });

  it("resumes after its config replica restarts, missing no change made meanwhile on another", async () => {
    proc.child.kill("SIGTERM");
    expect(await proc.exited).toBe(0);
    // While the watcher's replica is down, another replica takes two writes.
    const otherAddress = `127.0.0.1:${await freePort()}`;
    const other = startService("config", { DATABASE_URL: db.url, TASKMESH_LISTEN: otherAddress });
    const otherClient = connectUpstream(ConfigServiceService, "config", {}, { TASKMESH_UPSTREAM_CONFIG: otherAddress });
    try {
      await waitForServing(otherAddress, other);
      await otherClient.put({ key: KEY, value: "random", expectedRevision: undefined }, { waitForReady: true });
      await otherClient.put({ key: KEY, value: "latency", expectedRevision: undefined }, { waitForReady: true });
      expect(setting.get()).toBe("least_loaded");
    } finally {
      otherClient.close();
      other.child.kill("SIGTERM");
      await other.exited;
    }
    proc = startService("config", { DATABASE_URL: db.url, TASKMESH_LISTEN: address });
    await waitForServing(address, proc);
    await eventually(() => expect(setting.get()).toBe("latency"), 15_000);
    expect(changes.slice(1)).toEqual([["random", "least_loaded"], ["latency", "random"]]);
  });

  it("falls back when the key is deleted", async () => {
    await client.delete({ key: KEY, expectedRevision: undefined }, { waitForReady: true });
    await eventually(() => expect(setting.get()).toBe("round_robin"));
  });
});
