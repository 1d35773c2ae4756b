import pg from "pg";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigStore, WatchHub, migrations } from "../../../services/config/src/index.js";
import { createLogger, createPool, migrate } from "@taskmesh/kit";
import { createTestDatabase, type TestDatabase } from "../../support/postgres.js";

// The WatchHub on its own (no gRPC): one LISTEN connection per replica that
// must hand every committed change to its listeners exactly once, in order,
// whatever happens to that connection.

const logger = createLogger({ level: "silent" });

async function until(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

describe("WatchHub on Postgres", () => {
  let db: TestDatabase;
  let pool: pg.Pool;
  let store: ConfigStore;
  let admin: pg.Client;

  /** The backend pids of this database's LISTEN connections. */
  const listenerPids = async (): Promise<number[]> =>
    (await admin.query<{ pid: number }>("SELECT pid FROM pg_stat_activity WHERE application_name = 'config-watch-hub' AND datname = current_database()")).rows.map((r) => r.pid);
  const listeners = async (): Promise<number> => (await listenerPids()).length;
  /** Terminates a backend (as a failover or an idle-session killer would) and waits until it is gone. */
  const kill = async (pid: number): Promise<void> => {
    await admin.query("SELECT pg_terminate_backend($1)", [pid]);
    await until(async () => !(await listenerPids()).includes(pid), `backend ${pid} to exit`);
  };

  beforeAll(async () => {
    db = await createTestDatabase("config_watch_hub");
    pool = createPool({ url: db.url, applicationName: "watch-hub-test", logger, max: 4 });
    await migrate(pool, "config", migrations, logger);
    store = new ConfigStore(pool);
    admin = new pg.Client({ connectionString: db.url, application_name: "watch-hub-test-admin" });
    await admin.connect();
  });

  afterAll(async () => {
    await admin?.end();
    await pool?.end();
    if (db) {
      expect(await db.openConnectionsAfter()).toBe(0);
      await db.drop();
    }
  });

  it("hands every change over once and in order while its LISTEN connection is killed again and again", async () => {
    const hub = new WatchHub({ url: db.url, store, logger, maxBackoffMs: 100 });
    try {
      await hub.start();
      const from = hub.revision;
      const seen: bigint[] = [];
      hub.subscribe((changes) => seen.push(...changes.map((c) => BigInt(c.revision))));
      let last = from;
      const write = async (n: number): Promise<void> => {
        for (let i = 0; i < n; i++) last = BigInt((await store.put(`/hub/k${i % 3}`, i, undefined)).entry.revision);
      };
      for (let round = 0; round < 4; round++) {
        await write(2);
        await until(async () => (await listeners()) === 1, "the hub to be listening");
        await kill((await listenerPids())[0]!);
        await write(3); // committed while the hub is not listening: it must catch up on reconnecting, unprompted
        await until(() => seen.at(-1) === last, `the changes made while it was not listening (round ${round})`);
      }
      await write(3);
      await until(() => seen.at(-1) === last, "the last change");
      await sleep(150); // a late duplicate would show up here
      expect(seen).toEqual(Array.from({ length: Number(last - from) }, (_, i) => from + BigInt(i + 1)));
      expect(await listeners()).toBe(1);
    } finally {
      await hub.stop();
    }
  });

  it("stops for good when stopped while it waits to reconnect: no LISTEN connection comes back", async () => {
    const hub = new WatchHub({ url: db.url, store, logger, maxBackoffMs: 100 });
    await hub.start();
    expect(await listeners()).toBe(1);
    await kill((await listenerPids())[0]!);
    await sleep(10); // the hub notices and schedules its reconnect
    await hub.stop();
    await sleep(300); // well past the reconnect delay
    expect(await listeners()).toBe(0);
  });

  it("closes its LISTEN connection on stop", async () => {
    const hub = new WatchHub({ url: db.url, store, logger });
    await hub.start();
    expect(await listeners()).toBe(1);
    await hub.stop();
    await until(async () => (await listeners()) === 0, "the LISTEN connection to close");
  });
});
