import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EventType, type WatchResponse } from "@taskmesh/contracts/gen/taskmesh/config/v1/config";
import type { ResponseStream } from "@taskmesh/kit";
import { startConfigReplica, type ConfigReplica } from "../../support/config-server.js";
import { createTestDatabase, type TestDatabase } from "../../support/postgres.js";

/** Reads a watch stream in the background, keeping every message. */
function record(stream: ResponseStream<WatchResponse>) {
  const messages: WatchResponse[] = [];
  const done = (async () => {
    for await (const m of stream) messages.push(m);
  })().catch(() => undefined);
  const events = () => messages.flatMap((m) => m.events.map((e) => ({ type: e.type, key: e.entry!.key, value: e.entry!.value, revision: e.entry!.revision })));
  return { messages, events, done, cancel: () => stream.cancel() };
}

async function until(check: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe("config Watch: snapshot, live changes, resumption, fan-out across replicas", () => {
  let db: TestDatabase;
  let a: ConfigReplica;
  let b: ConfigReplica;
  const put = (key: string, value: unknown, r = () => a) => r().client.put({ key, value, expectedRevision: undefined });

  beforeAll(async () => {
    db = await createTestDatabase("config_watch");
    a = await startConfigReplica(db.url, "config-a");
    b = await startConfigReplica(db.url, "config-b");
  });

  afterAll(async () => {
    await a?.stop();
    await b?.stop();
    await db?.drop();
  });

  it("sends the current entries, then marks the snapshot complete, then live changes in order", async () => {
    await put("/snap/a", 1);
    await put("/snap/b", 2);
    await put("/other/x", 0);
    const w = record(a.client.watch({ prefix: "/snap/", afterRevision: undefined }));
    await until(() => w.messages.some((m) => m.snapshotComplete), "the snapshot");
    expect(w.events().map((e) => [e.key, e.value])).toEqual([["/snap/a", 1], ["/snap/b", 2]]);
    await put("/snap/a", 10);
    await put("/other/y", 0);
    await a.client.delete({ key: "/snap/b", expectedRevision: undefined });
    await until(() => w.events().length === 4, "two live changes");
    expect(w.events().slice(2).map((e) => [e.type, e.key, e.value])).toEqual([
      [EventType.EVENT_TYPE_PUT, "/snap/a", 10], [EventType.EVENT_TYPE_DELETE, "/snap/b", 2],
    ]);
    const revisions = w.events().slice(2).map((e) => e.revision);
    expect(revisions[1]! > revisions[0]!).toBe(true);
    w.cancel();
    await w.done;
  });

  it("resumes after a disconnect from the last revision received: every missed change once, none twice", async () => {
    const first = record(a.client.watch({ prefix: "/resume/", afterRevision: undefined }));
    await until(() => first.messages.some((m) => m.snapshotComplete), "the snapshot");
    await put("/resume/k", 1);
    await put("/resume/k", 2);
    await until(() => first.events().length === 2, "two changes");
    const last = first.messages[first.messages.length - 1]!.revision;
    first.cancel();
    await first.done;
    await put("/resume/k", 3);
    await put("/resume/j", 4);
    const resumed = record(b.client.watch({ prefix: "/resume/", afterRevision: last }));
    await until(() => resumed.events().length >= 2, "the missed changes");
    await put("/resume/k", 5);
    await until(() => resumed.events().length >= 3, "a live change after the replay");
    await new Promise((r) => setTimeout(r, 200));
    expect(resumed.events().map((e) => [e.key, e.value])).toEqual([["/resume/k", 3], ["/resume/j", 4], ["/resume/k", 5]]);
    expect(resumed.messages.some((m) => m.snapshotComplete)).toBe(false);
    resumed.cancel();
    await resumed.done;
  });

  it("delivers a write made on one replica to a watcher on another", async () => {
    const w = record(b.client.watch({ prefix: "/fan/", afterRevision: undefined }));
    await until(() => w.messages.some((m) => m.snapshotComplete), "the snapshot");
    await put("/fan/k", "from a", () => a);
    await until(() => w.events().length === 1, "the write from the other replica");
    expect(w.events()[0]).toMatchObject({ key: "/fan/k", value: "from a" });
    w.cancel();
    await w.done;
  });

  it("keeps delivering after its LISTEN connection is killed", async () => {
    const w = record(a.client.watch({ prefix: "/listen/", afterRevision: undefined }));
    await until(() => w.messages.some((m) => m.snapshotComplete), "the snapshot");
    const admin = new pg.Client({ connectionString: db.url });
    await admin.connect();
    try {
      const killed = await admin.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'config-watch-hub' AND datname = current_database()");
      expect(killed.rowCount).toBe(2); // one hub per replica
    } finally {
      await admin.end();
    }
    await put("/listen/k", "after the kill", () => b);
    await until(() => w.events().length === 1, "a change after the LISTEN connection was killed", 8000);
    expect(w.events()[0]).toMatchObject({ key: "/listen/k", value: "after the kill" });
    w.cancel();
    await w.done;
  });

  it("never mixes other prefixes into a watch", async () => {
    const w = record(a.client.watch({ prefix: "/only/this", afterRevision: undefined }));
    await until(() => w.messages.some((m) => m.snapshotComplete), "the snapshot");
    await put("/only/that", 1);
    await put("/only/this", 2);
    await put("/only/this/deeper", 3);
    await until(() => w.events().length === 2, "the two matching changes");
    expect(w.events().map((e) => e.key)).toEqual(["/only/this", "/only/this/deeper"]);
    w.cancel();
    await w.done;
  });
});
