import { describe, expect, it } from "vitest";
import { LiveQueue } from "../../../services/config/src/index.js";
import type { ChangeRow } from "../../../services/config/src/sql/entries.js";

const change = (key: string, revision: number): ChangeRow => ({
  key, kind: "put", value: revision, revision: String(revision), create_revision: "1", version: "1", updated_at: new Date(0),
});

describe("LiveQueue: the bounded buffer between the watch hub and one watcher", () => {
  it("keeps only the changes under its prefix, in order, and hands them over in one batch", async () => {
    const q = new LiveQueue("/a/");
    q.push([change("/a/1", 1), change("/b/1", 2), change("/a/2", 3)]);
    expect(await q.next(new AbortController().signal)).toEqual({ changes: [change("/a/1", 1), change("/a/2", 3)] });
  });

  it("wakes a waiting watcher when a change arrives", async () => {
    const q = new LiveQueue("/");
    const next = q.next(new AbortController().signal);
    setTimeout(() => q.push([change("/x", 7)]), 20);
    expect(await next).toEqual({ changes: [change("/x", 7)] });
  });

  it("drops its buffer and says so when the watcher falls too far behind, then buffers again", async () => {
    const q = new LiveQueue("/", 3);
    q.push([change("/x", 1), change("/x", 2)]);
    q.push([change("/x", 3), change("/x", 4)]);
    expect(await q.next(new AbortController().signal)).toEqual({ overflowed: true });
    q.push([change("/x", 5)]);
    expect(await q.next(new AbortController().signal)).toEqual({ changes: [change("/x", 5)] });
  });

  it("stops waiting with the signal's reason", async () => {
    const q = new LiveQueue("/");
    const stop = new AbortController();
    const next = q.next(stop.signal);
    stop.abort(new Error("caller went away"));
    await expect(next).rejects.toThrow("caller went away");
  });
});
