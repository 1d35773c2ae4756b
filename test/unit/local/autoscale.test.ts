import { describe, expect, it } from "vitest";
import { decide, parseAutoscale, type AutoscaleMemory } from "@taskmesh/local/autoscale";

describe("the autoscaler's policy", () => {
  const policy = parseAutoscale("worker=1..6", { TASKMESH_AUTOSCALE_INTERVAL: "1s", TASKMESH_AUTOSCALE_UP_COOLDOWN: "5s", TASKMESH_AUTOSCALE_DOWN_AFTER: "10s" });

  it("reads <service>=<min>..<max> and its environment, refusing what does not fit", () => {
    expect(policy).toEqual({ service: "worker", min: 1, max: 6, target: 8, intervalMs: 1000, upCooldownMs: 5000, downAfterMs: 10_000 });
    expect(parseAutoscale("worker=2..2", {})).toMatchObject({ min: 2, max: 2, intervalMs: 2000, upCooldownMs: 10_000, downAfterMs: 60_000 });
    for (const bad of ["worker", "worker=0..3", "worker=4..2", "worker=1..17", "worker=1-3"]) expect(() => parseAutoscale(bad, {}), bad).toThrow(/--autoscale/);
    expect(() => parseAutoscale("worker=1..3", { TASKMESH_AUTOSCALE_TARGET: "0" })).toThrow(/TASKMESH_AUTOSCALE_TARGET/);
    expect(() => parseAutoscale("worker=1..3", { TASKMESH_AUTOSCALE_DOWN_AFTER: "soon" })).toThrow(/TASKMESH_AUTOSCALE_DOWN_AFTER/);
  });

  it("scales up at once to the tasks in flight over the target, within min and max, at most once per cooldown", () => {
    const memory: AutoscaleMemory = { lastUpAt: 0, wanted: [] };
    const t0 = 100_000;
    expect(decide(policy, memory, 0, 1, t0)).toBe(1);
    expect(decide(policy, memory, 20, 1, t0 + 1000)).toBe(3); // ceil(20 / 8)
    expect(decide(policy, memory, 40, 3, t0 + 2000)).toBe(3); // within the cooldown
    expect(decide(policy, memory, 40, 3, t0 + 6000)).toBe(5);
    expect(decide(policy, memory, 400, 5, t0 + 12_000)).toBe(6); // max
  });

  it("scales down only after fewer were wanted for the whole window, to the most wanted in it", () => {
    const memory: AutoscaleMemory = { lastUpAt: 0, wanted: [] };
    const t0 = 100_000;
    expect(decide(policy, memory, 40, 1, t0)).toBe(5);
    let at = t0;
    // Load falls to 12 (2 wanted), then to 0: nothing goes until a window has passed since the last scale-up.
    for (const load of [12, 12, 12, 0, 0, 0, 0, 0, 0]) expect(decide(policy, memory, load, 5, (at += 1000)), `at +${at - t0}`).toBe(5);
    expect(decide(policy, memory, 0, 5, (at += 1000))).toBe(5); // 10 s after: the reading that wanted 5 is still in the window
    expect(decide(policy, memory, 0, 5, (at += 1000))).toBe(2); // it has left; the window still holds readings that wanted 2
    expect(decide(policy, memory, 0, 2, (at += 1000))).toBe(2);
    expect(decide(policy, memory, 0, 2, (at += 1000))).toBe(2);
    expect(decide(policy, memory, 0, 2, (at += 1000))).toBe(1); // the 2s have left the window
  });
});
