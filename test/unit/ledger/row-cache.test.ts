import { describe, expect, it } from "vitest";
import { RowCache } from "../../../services/ledger/src/row-cache.js";
import type { TaskRow } from "@taskmesh/ledger-service/sql/tasks";

const row = (id: string, input: Record<string, unknown> = {}): TaskRow => ({ id, input, labels: {} }) as unknown as TaskRow;

describe("RowCache: the leased rows a ledger store remembers for one-statement completions", () => {
  it("answers the row and version last remembered, and nothing once forgotten", () => {
    const cache = new RowCache();
    cache.remember(row("a"), "10");
    cache.remember(row("a", { n: 2 }), "11");
    expect(cache.get("a")).toEqual({ row: row("a", { n: 2 }), xmin: "11" });
    cache.forget("a");
    expect([cache.get("a"), cache.size]).toEqual([undefined, 0]);
  });

  it("stays within its bounds: rows, the size of their inputs (the oldest go first), and no row with a large input", () => {
    const byCount = new RowCache({ max: 2, maxBytes: 1 << 20, maxRowBytes: 1 << 16 });
    for (const id of ["a", "b", "c"]) byCount.remember(row(id), "1");
    expect(["a", "b", "c"].map((id) => byCount.get(id) !== undefined)).toEqual([false, true, true]);

    // Each of these counts about 1.1 kB (its input, its labels and 1 kB for the rest of the row): room for two.
    const bySize = new RowCache({ max: 100, maxBytes: 2800, maxRowBytes: 2048 });
    for (const id of ["a", "b", "c", "d"]) bySize.remember(row(id, { text: "x".repeat(50) }), "1");
    expect(["a", "b", "c", "d"].map((id) => bySize.get(id) !== undefined)).toEqual([false, false, true, true]);
    bySize.remember(row("big", { text: "x".repeat(4096) }), "1");
    expect([bySize.get("big"), bySize.size]).toEqual([undefined, 2]);
  });
});
