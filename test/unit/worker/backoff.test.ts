import { describe, expect, it } from "vitest";
import { backoffDelay } from "../../../services/worker/src/index.js";

describe("backoffDelay", () => {
  it("grows exponentially from initialMs, capped at maxMs", () => {
    const mid = () => 0.5; // no jitter at the midpoint
    expect([1, 2, 3, 4, 10].map((n) => backoffDelay(n, { initialMs: 100, maxMs: 700 }, mid))).toEqual([100, 200, 400, 700, 700]);
  });

  it("spreads each delay by the jitter fraction either side", () => {
    const opts = { initialMs: 1000, jitter: 0.2 };
    expect(backoffDelay(1, opts, () => 0)).toBe(800);
    expect(backoffDelay(1, opts, () => 0.999999)).toBe(1200);
  });
});
