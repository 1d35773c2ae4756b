import { describe, expect, it } from "vitest";
import { freePort } from "@taskmesh/local/secrets";
import { createLogger } from "@taskmesh/kit/log";
import { LeaderRelay, type LeaderRelayOptions } from "@taskmesh/kit/pg/leader-relay";

/** A logger that keeps each line, parsed, in memory. */
function memoryLogger() {
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger({ level: "debug", destination: { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) } });
  return { logger, lines };
}

/** Polls `check` until it holds; fails naming `what` after `timeoutMs`. */
async function waitFor(what: string, check: () => boolean, timeoutMs = 5000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A relay whose database refuses connections (nothing listens on its port), counting what it was asked to read. */
async function unreachableRelay(options: Partial<LeaderRelayOptions<string>> = {}) {
  const { logger, lines } = memoryLogger();
  const calls = { readBatch: 0 };
  const relay = new LeaderRelay<string>({
    databaseUrl: `postgres://relay:relay@127.0.0.1:${await freePort()}/relay`,
    brokers: ["127.0.0.1:1"],
    logger,
    topic: "test.leader-relay",
    name: "test-leader-relay",
    label: "test",
    lock: { tryLock: "SELECT true AS locked", unlock: "SELECT true AS unlocked" },
    readBatch: async () => {
      calls.readBatch++;
      return [];
    },
    markPublished: async () => undefined,
    toMessage: (row) => ({ value: row }),
    ...options,
  });
  const failures = () => lines.filter((l) => l.msg === "test relay failed; rows stay unpublished and are retried");
  return { relay, lines, calls, failures };
}

describe("kit: LeaderRelay", () => {
  it("stops from idle without connecting, and never starts after that", async () => {
    const { relay, lines } = await unreachableRelay();
    expect(relay.state).toBe("idle");
    await relay.stop();
    expect(relay.state).toBe("stopped");
    expect(() => relay.start()).toThrow("test relay is stopped");
    expect(lines).toEqual([]);
  });

  it("refuses a second start while running", async () => {
    const { relay } = await unreachableRelay();
    relay.start();
    expect(() => relay.start()).toThrow("test relay is running");
    await relay.stop();
    expect(relay.state).toBe("stopped");
  });

  it("backs off while Postgres is unreachable, doubling up to maxMs, as a standby that reads and publishes nothing", async () => {
    const { relay, calls, failures } = await unreachableRelay({ backoff: { initialMs: 10, maxMs: 40 } });
    relay.start();
    await waitFor("five failed attempts", () => failures().length >= 5);
    expect(relay.state).toBe("running");
    expect(relay.isLeader).toBe(false);
    await relay.stop();
    expect(failures().slice(0, 5).map((l) => l.retryInMs)).toEqual([10, 20, 40, 40, 40]);
    expect(failures()[0]).toMatchObject({ component: "test-relay", topic: "test.leader-relay", level: "warn" });
    expect(relay.published).toBe(0);
    expect(calls.readBatch).toBe(0);
    expect(relay.state).toBe("stopped");
  });

  it("cuts a back-off short on stop", async () => {
    const { relay, failures } = await unreachableRelay({ backoff: { initialMs: 60_000, maxMs: 60_000 } });
    relay.start();
    await waitFor("the first failed attempt", () => failures().length === 1);
    const t0 = Date.now();
    await relay.stop();
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(relay.state).toBe("stopped");
    expect(failures()).toHaveLength(1);
  });
});
