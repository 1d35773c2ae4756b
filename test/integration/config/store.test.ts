import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, MeshError } from "@taskmesh/kit";
import { startConfigReplica, type ConfigReplica } from "../../support/config-server.js";
import { createTestDatabase, type TestDatabase } from "../../support/postgres.js";

const failure = (p: Promise<unknown>) => p.then(() => { throw new Error("expected the call to fail"); }, (e: unknown) => e as MeshError);

describe("config: reads, writes, compare-and-swap, lists and history on Postgres", () => {
  let db: TestDatabase;
  let a: ConfigReplica;
  let b: ConfigReplica;
  const put = (key: string, value: unknown, expectedRevision?: bigint, r = () => a) => r().client.put({ key, value, expectedRevision });

  beforeAll(async () => {
    db = await createTestDatabase("config_store");
    a = await startConfigReplica(db.url, "config-a");
    b = await startConfigReplica(db.url, "config-b");
  });

  afterAll(async () => {
    await a?.stop();
    await b?.stop();
    const until = Date.now() + 5000;
    while ((await db.openConnections()) > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
    expect(await db.openConnections()).toBe(0);
    await db.drop();
  });

  it("stores every kind of JSON value and reads it back, from either replica", async () => {
    const values: Array<[string, unknown]> = [
      ["/kinds/string", "least_loaded"], ["/kinds/number", 12.5], ["/kinds/bool", true], ["/kinds/null", null],
      ["/kinds/list", [1, "two", { three: 3 }]], ["/kinds/object", { limit: 100, per: "minute", burst: [1, 2] }],
    ];
    for (const [key, value] of values) await put(key, value);
    for (const [key, value] of values) expect((await b.client.get({ key })).entry?.value).toEqual(value);
  });

  it("gives each write the next store revision and counts versions per key", async () => {
    const first = await put("/rev/x", 1);
    const second = await put("/rev/x", 2);
    const other = await put("/rev/y", 1);
    expect(second.entry!.revision).toBe(first.entry!.revision + 1n);
    expect(other.entry!.revision).toBe(second.entry!.revision + 1n);
    expect([first.entry!.version, second.entry!.version]).toEqual([1n, 2n]);
    expect(second.entry!.createRevision).toBe(first.entry!.revision);
    expect(second.previous?.value).toBe(1);
    expect(first.previous).toBeUndefined();
  });

  it("treats a key without its leading slash as the same key", async () => {
    await put("canon/key", "v");
    expect((await a.client.get({ key: "/canon/key" })).entry).toMatchObject({ key: "/canon/key", value: "v" });
  });

  it("compare-and-swap: 0 creates only if absent; a stale revision is ABORTED with the actual one", async () => {
    const created = await put("/cas/k", "a", 0n);
    const again = await failure(put("/cas/k", "b", 0n));
    expect(again).toMatchObject({ code: Code.ABORTED, reason: "RES_REVISION_MISMATCH", metadata: { actual_revision: String(created.entry!.revision) } });
    const swapped = await put("/cas/k", "b", created.entry!.revision);
    const stale = await failure(put("/cas/k", "c", created.entry!.revision));
    expect(stale.metadata.actual_revision).toBe(String(swapped.entry!.revision));
    expect((await a.client.get({ key: "/cas/k" })).entry?.value).toBe("b");
    const missing = await failure(put("/cas/missing", 1, 5n));
    expect(missing.metadata.actual_revision).toBe("0");
  });

  it("loses no update when two replicas increment one counter with CAS concurrently", async () => {
    await put("/cas/counter", 0);
    const increment = async (r: ConfigReplica): Promise<number> => {
      for (let attempts = 1; ; attempts++) {
        const { entry } = await r.client.get({ key: "/cas/counter" });
        try {
          await r.client.put({ key: "/cas/counter", value: (entry!.value as number) + 1, expectedRevision: entry!.revision });
          return attempts;
        } catch (error) {
          if (!(error instanceof MeshError) || error.code !== Code.ABORTED) throw error;
        }
      }
    };
    const attempts = await Promise.all(Array.from({ length: 20 }, (_, i) => increment(i % 2 === 0 ? a : b)));
    expect((await a.client.get({ key: "/cas/counter" })).entry?.value).toBe(20);
    expect(attempts.some((n) => n > 1)).toBe(true); // they really did conflict
  });

  it("deletes a key as a change of its own, and then it is NOT_FOUND", async () => {
    const written = await put("/del/k", "v");
    const deleted = await a.client.delete({ key: "/del/k", expectedRevision: undefined });
    expect(deleted.revision).toBeGreaterThan(written.entry!.revision);
    expect(deleted.previous?.value).toBe("v");
    expect(await failure(a.client.get({ key: "/del/k" }))).toMatchObject({ code: Code.NOT_FOUND, reason: "RES_KEY_NOT_FOUND" });
    expect(await failure(a.client.delete({ key: "/del/k", expectedRevision: undefined }))).toMatchObject({ code: Code.NOT_FOUND });
  });

  it("lists a prefix in key order, a page at a time, each key once", async () => {
    for (const k of ["e", "a", "d", "b", "c"]) await put(`/page/${k}`, k);
    await put("/pages", "not under /page/");
    const seen: string[] = [];
    let token = "";
    let pages = 0;
    do {
      const page = await a.client.list({ prefix: "/page/", pageSize: 2, pageToken: token });
      seen.push(...page.entries.map((e) => e.key));
      token = page.nextPageToken;
      pages++;
    } while (token !== "");
    expect(seen).toEqual(["/page/a", "/page/b", "/page/c", "/page/d", "/page/e"]);
    expect(pages).toBe(3);
  });

  it("keeps each key's history, newest first, deletions included", async () => {
    await put("/hist/k", 1);
    await put("/hist/k", 2);
    await a.client.delete({ key: "/hist/k", expectedRevision: undefined });
    await put("/hist/k", 3);
    const first = await a.client.history({ key: "/hist/k", pageSize: 3, pageToken: "" });
    const rest = await a.client.history({ key: "/hist/k", pageSize: 3, pageToken: first.nextPageToken });
    const events = [...first.events, ...rest.events];
    expect(events.map((e) => [e.type, e.entry?.value])).toEqual([[1, 3], [2, 2], [1, 2], [1, 1]]);
    expect(rest.nextPageToken).toBe("");
    expect(await failure(a.client.history({ key: "/hist/never", pageSize: 0, pageToken: "" }))).toMatchObject({ code: Code.NOT_FOUND });
  });

  it("answers bad input with INVALID_ARGUMENT and field violations, storing nothing", async () => {
    const before = (await a.client.list({ prefix: "/", pageSize: 1, pageToken: "" })).revision;
    const cases: Array<[Promise<unknown>, string, string]> = [
      [put("", 1), "key", "VAL_INVALID_KEY"],
      [put("//x", 1), "key", "VAL_INVALID_KEY"],
      [put("/a/", 1), "key", "VAL_INVALID_KEY"],
      [put("/a b", 1), "key", "VAL_INVALID_KEY"],
      [put(`/${"k".repeat(300)}`, 1), "key", "VAL_INVALID_KEY"],
      [put("/ok", undefined), "value", "VAL_INVALID_VALUE"],
      [put("/ok", "x".repeat(70 * 1024)), "value", "VAL_INVALID_VALUE"],
      [put("/ok", JSON.parse(`${"[".repeat(40)}1${"]".repeat(40)}`)), "value", "VAL_INVALID_VALUE"],
      [put("/ok", 1, -1n), "expected_revision", "VAL_INVALID_REVISION"],
      [a.client.list({ prefix: "no-slash", pageSize: 0, pageToken: "" }), "prefix", "VAL_INVALID_PREFIX"],
      [a.client.list({ prefix: "/", pageSize: 5000, pageToken: "" }), "page_size", "VAL_INVALID_PAGE_SIZE"],
      [a.client.list({ prefix: "/", pageSize: 0, pageToken: "garbage" }), "page_token", "VAL_INVALID_PAGE_TOKEN"],
      [a.client.watch({ prefix: "/", afterRevision: -2n })[Symbol.asyncIterator]().next(), "after_revision", "VAL_INVALID_REVISION"],
    ];
    for (const [call, field, reason] of cases) {
      const e = await failure(call);
      expect(e, `${field} ${reason}`).toMatchObject({ code: Code.INVALID_ARGUMENT, reason });
      expect(e.violations.map((v) => v.field)).toEqual([field]);
    }
    const pageOfOtherPrefix = (await a.client.list({ prefix: "/page/", pageSize: 1, pageToken: "" })).nextPageToken;
    expect(await failure(a.client.list({ prefix: "/kinds/", pageSize: 1, pageToken: pageOfOtherPrefix }))).toMatchObject({ reason: "VAL_INVALID_PAGE_TOKEN" });
    expect((await a.client.list({ prefix: "/", pageSize: 1, pageToken: "" })).revision).toBe(before);
    expect(await failure(a.client.get({ key: "/ok" }))).toMatchObject({ code: Code.NOT_FOUND });
  });
});
