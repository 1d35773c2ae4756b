import { describe, expect, it } from "vitest";
import {
  STRATEGIES,
  createStrategy,
  parseStrategy,
  type Candidate,
  type Strategy,
  type StrategyName,
} from "../../../services/coordinator/src/strategies.js";

/** A seeded PRNG (mulberry32), so "random" runs repeat exactly. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** An idle worker with 10 slots, all free, weight 1 and no history; override what a test needs. */
function worker(workerId: string, over: Partial<Candidate> = {}): Candidate {
  return {
    workerId,
    inFlight: 0,
    maxConcurrency: 10,
    free: 10,
    weight: 1,
    latencyEwmaMs: undefined,
    successes: 0,
    failures: 0,
    meanDurationMs: undefined,
    ...over,
  };
}

/** Plans and commits every pick; returns the slots. */
function round(s: Strategy, candidates: readonly Candidate[], max: number, capability = "cap"): readonly string[] {
  const plan = s.plan(capability, candidates, max);
  plan.commit(plan.slots.length);
  return plan.slots;
}

/** How often each worker id occurs. */
function counts(slots: readonly string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const id of slots) out[id] = (out[id] ?? 0) + 1;
  return out;
}

/** A random set of 0..6 workers with assorted loads, weights and histories. */
function randomCandidates(rnd: () => number): Candidate[] {
  const int = (n: number): number => Math.floor(rnd() * n);
  const n = int(7);
  return Array.from({ length: n }, (_, i) => {
    const maxConcurrency = 1 + int(8);
    const inFlight = int(maxConcurrency + 1);
    return worker(`w${(i * 7919) % 13}`, {
      maxConcurrency,
      inFlight,
      free: int(maxConcurrency - inFlight + 1),
      weight: 1 + int(5),
      latencyEwmaMs: rnd() < 0.2 ? undefined : 5 + int(50),
      successes: int(10),
      failures: int(10),
      meanDurationMs: rnd() < 0.2 ? undefined : 10 + int(100),
    });
  });
}

describe("dispatch strategies: every plan", () => {
  it.each(STRATEGIES)("%s never exceeds a worker's free slots or max, never picks a full worker, and ignores input order", (name) => {
    const rnd = seeded(42);
    const s = createStrategy(name, seeded(7));
    const twin = createStrategy(name, seeded(7));
    for (let r = 0; r < 300; r++) {
      const candidates = randomCandidates(rnd);
      const max = Math.floor(rnd() * 12);
      const plan = s.plan("cap", candidates, max);
      const totalFree = candidates.reduce((sum, c) => sum + c.free, 0);
      expect(plan.slots.length).toBe(Math.min(max, totalFree));
      for (const [id, n] of Object.entries(counts(plan.slots))) {
        expect(n).toBeLessThanOrEqual(candidates.find((c) => c.workerId === id)!.free);
      }
      const shuffled = [...candidates].reverse();
      const twinPlan = twin.plan("cap", shuffled, max);
      expect(twinPlan.slots).toEqual(plan.slots);
      const used = Math.floor(rnd() * (plan.slots.length + 1));
      plan.commit(used);
      twinPlan.commit(used);
    }
  });

  it.each(STRATEGIES)("%s plans nothing for no candidates, for max 0, or when every worker is full", (name) => {
    const s = createStrategy(name, seeded(1));
    expect(s.plan("cap", [], 5).slots).toEqual([]);
    expect(s.plan("cap", [worker("a")], 0).slots).toEqual([]);
    expect(s.plan("cap", [worker("a", { free: 0 }), worker("b", { free: 0 })], 5).slots).toEqual([]);
    expect(s.name).toBe(name);
  });

  it.each(STRATEGIES)("%s refuses a used count outside 0..slots.length and a second commit", (name) => {
    const s = createStrategy(name, seeded(1));
    const plan = s.plan("cap", [worker("a"), worker("b")], 3);
    expect(() => plan.commit(4)).toThrow(RangeError);
    expect(() => plan.commit(-1)).toThrow(RangeError);
    expect(() => plan.commit(1.5)).toThrow(RangeError);
    plan.commit(3);
    expect(() => plan.commit(3)).toThrow(/already committed/);
  });
});

describe("round_robin", () => {
  it("takes workers in id order, continuing after the last pick across rounds", () => {
    const s = createStrategy("round_robin");
    const ws = [worker("c"), worker("a"), worker("b")];
    expect(round(s, ws, 5)).toEqual(["a", "b", "c", "a", "b"]);
    expect(round(s, ws, 2)).toEqual(["c", "a"]);
    expect(Array.from({ length: 4 }, () => round(s, ws, 1)[0])).toEqual(["b", "c", "a", "b"]);
  });

  it("skips full workers and gives the rest to whoever still has slots", () => {
    const s = createStrategy("round_robin");
    expect(round(s, [worker("a", { free: 0 }), worker("b", { free: 1 }), worker("c", { free: 3 })], 9)).toEqual(["b", "c", "c", "c"]);
  });

  it("advances only past the picks the ledger used", () => {
    const s = createStrategy("round_robin");
    const ws = [worker("a"), worker("b"), worker("c")];
    const first = s.plan("cap", ws, 3);
    expect(first.slots).toEqual(["a", "b", "c"]);
    first.commit(1);
    const second = s.plan("cap", ws, 3);
    expect(second.slots).toEqual(["b", "c", "a"]);
    second.commit(0);
    expect(s.plan("cap", ws, 3).slots).toEqual(["b", "c", "a"]);
  });

  it("keeps one cursor per capability and survives the last-picked worker leaving", () => {
    const s = createStrategy("round_robin");
    const ws = [worker("a"), worker("b"), worker("c")];
    expect(round(s, ws, 2, "x")).toEqual(["a", "b"]);
    expect(round(s, ws, 1, "y")).toEqual(["a"]);
    expect(round(s, [worker("a"), worker("c")], 1, "x")).toEqual(["c"]);
  });
});

describe("least_loaded", () => {
  it("splits tasks between two idle equal workers, and alternates them across rounds", () => {
    const s = createStrategy("least_loaded");
    const ws = [worker("a"), worker("b")];
    expect(round(s, ws, 2)).toEqual(["a", "b"]);
    expect(Array.from({ length: 4 }, () => round(s, ws, 1)[0])).toEqual(["a", "b", "a", "b"]);
  });

  it("fills by load ratio, then fewer tasks in flight", () => {
    const s = createStrategy("least_loaded");
    const ws = [
      worker("a", { maxConcurrency: 10, inFlight: 5, free: 5 }),
      worker("b", { maxConcurrency: 2, inFlight: 0, free: 2 }),
      worker("c", { maxConcurrency: 4, inFlight: 1, free: 3 }),
    ];
    expect(round(s, ws, 6)).toEqual(["b", "c", "b", "c", "a", "a"]);
  });

  it("spreads evenly over rounds while tasks pile up", () => {
    const s = createStrategy("least_loaded");
    const inFlight: Record<string, number> = { a: 0, b: 0, c: 0 };
    for (let r = 0; r < 12; r++) {
      const ws = Object.entries(inFlight).map(([id, n]) => worker(id, { maxConcurrency: 4, inFlight: n, free: 4 - n }));
      for (const id of round(s, ws, 1)) inFlight[id]! += 1;
    }
    expect(inFlight).toEqual({ a: 4, b: 4, c: 4 });
  });

  it("never picks a worker while another with a free slot has a lower load ratio", () => {
    const rnd = seeded(3);
    const s = createStrategy("least_loaded");
    for (let r = 0; r < 300; r++) {
      const load = new Map(randomCandidates(rnd).map((c) => [c.workerId, { ...c }]));
      const slots = round(s, [...load.values()], Math.floor(rnd() * 12));
      for (const id of slots) {
        const picked = load.get(id)!;
        for (const other of load.values()) {
          if (other.free > 0) expect(picked.inFlight / picked.maxConcurrency).toBeLessThanOrEqual(other.inFlight / other.maxConcurrency);
        }
        load.set(id, { ...picked, inFlight: picked.inFlight + 1, free: picked.free - 1 });
      }
    }
  });
});

describe("random", () => {
  it("covers every worker about evenly over many picks with a seeded PRNG", () => {
    const s = createStrategy("random", seeded(2024));
    const ws = [worker("a"), worker("b"), worker("c")];
    const all: string[] = [];
    for (let r = 0; r < 1000; r++) all.push(...round(s, ws, 3));
    const n = counts(all);
    expect(Object.keys(n).sort()).toEqual(["a", "b", "c"]);
    for (const id of ["a", "b", "c"]) {
      expect(n[id]).toBeGreaterThan(900);
      expect(n[id]).toBeLessThan(1100);
    }
  });

  it("picks uniformly among the workers that still have a slot, by the injected random", () => {
    expect(round(createStrategy("random", () => 0), [worker("b", { free: 1 }), worker("a", { free: 2 }), worker("c", { free: 0 })], 9)).toEqual(["a", "a", "b"]);
    expect(round(createStrategy("random", () => 0.999999), [worker("b", { free: 1 }), worker("a", { free: 2 }), worker("c", { free: 0 })], 9)).toEqual(["b", "a", "a"]);
    expect(round(createStrategy("random", () => 0.5), [worker("a"), worker("b"), worker("c")], 1)).toEqual(["b"]);
  });

  it("repeats exactly with the same random function", () => {
    const ws = [worker("a"), worker("b"), worker("c"), worker("d")];
    const run = (): readonly string[] => round(createStrategy("random", seeded(9)), ws, 20);
    expect(run()).toEqual(run());
  });
});

describe("capability_best", () => {
  const good = (over: Partial<Candidate> = {}): Candidate => worker("good", { successes: 9, failures: 1, ...over });
  const poor = (over: Partial<Candidate> = {}): Candidate => worker("poor", { successes: 1, failures: 9, ...over });

  it("gives everything to the more successful worker while it has room, and spills over when it is full", () => {
    const s = createStrategy("capability_best");
    expect(round(s, [poor(), good()], 3)).toEqual(["good", "good", "good"]);
    expect(round(s, [poor(), good({ free: 2 })], 4)).toEqual(["good", "good", "poor", "poor"]);
    expect(round(s, [poor(), good({ free: 0 })], 2)).toEqual(["poor", "poor"]);
  });

  it("smooths success rates, so a new worker ranks between proven good and proven poor ones", () => {
    const s = createStrategy("capability_best");
    const ws = [worker("new", { free: 1 }), worker("ok", { successes: 3, failures: 0, free: 1 }), worker("bad", { successes: 1, failures: 3, free: 1 })];
    expect(round(s, ws, 3)).toEqual(["ok", "new", "bad"]);
  });

  it("breaks equal success rates by mean run time, an unknown one counting as the mean of the known", () => {
    const s = createStrategy("capability_best");
    const ws = [
      worker("slow", { successes: 4, meanDurationMs: 30, free: 1 }),
      worker("unknown", { successes: 4, meanDurationMs: undefined, free: 1 }),
      worker("fast", { successes: 4, meanDurationMs: 10, free: 1 }),
    ];
    expect(round(s, ws, 3)).toEqual(["fast", "unknown", "slow"]);
    expect(round(s, [ws[1]!, worker("slow", { successes: 4, meanDurationMs: 15, free: 1 }), worker("fast", { successes: 4, meanDurationMs: 10, free: 1 })], 3)).toEqual(["fast", "unknown", "slow"]);
  });

  it("uses load, then turns, between equally good workers", () => {
    const s = createStrategy("capability_best");
    expect(round(s, [good({ workerId: "a", inFlight: 2, free: 8 }), good({ workerId: "b" })], 4)).toEqual(["b", "b", "a", "b"]);
    expect(Array.from({ length: 4 }, () => round(s, [good({ workerId: "a" }), good({ workerId: "b" })], 1)[0])).toEqual(["a", "b", "a", "b"]);
  });
});

describe("latency", () => {
  it("prefers the fast worker but spreads once its queue costs as much as the slow one", () => {
    const s = createStrategy("latency");
    const ws = [worker("fast", { latencyEwmaMs: 10 }), worker("slow", { latencyEwmaMs: 30 })];
    expect(round(s, ws, 8)).toEqual(["fast", "fast", "slow", "fast", "fast", "fast", "slow", "fast"]);
    expect(round(s, [worker("fast", { latencyEwmaMs: 10, inFlight: 5, free: 5 }), worker("slow", { latencyEwmaMs: 30 })], 1)).toEqual(["slow"]);
  });

  it("tries a worker of unknown latency first", () => {
    const s = createStrategy("latency");
    expect(round(s, [worker("fast", { latencyEwmaMs: 1 }), worker("new", { free: 2 })], 3)).toEqual(["new", "new", "fast"]);
  });

  it("alternates equally fast idle workers", () => {
    const s = createStrategy("latency");
    const ws = [worker("a", { latencyEwmaMs: 20 }), worker("b", { latencyEwmaMs: 20 })];
    expect(round(s, ws, 4)).toEqual(["a", "b", "a", "b"]);
    expect(Array.from({ length: 3 }, () => round(s, ws, 1)[0])).toEqual(["a", "b", "a"]);
  });
});

describe("weighted_round_robin", () => {
  it("picks weights 3 and 1 in the ratio 3:1, interleaved", () => {
    const s = createStrategy("weighted_round_robin");
    const ws = [worker("a", { weight: 3 }), worker("b", { weight: 1 })];
    expect(round(s, ws, 4)).toEqual(["a", "a", "b", "a"]);
    expect(round(s, ws, 8)).toEqual(["a", "a", "b", "a", "a", "a", "b", "a"]);
  });

  it("gives nginx's smooth sequence for weights 5, 1, 1 and exact shares over many picks", () => {
    const s = createStrategy("weighted_round_robin");
    expect(round(s, [worker("a", { weight: 5 }), worker("b", { weight: 1 }), worker("c", { weight: 1 })], 7)).toEqual(["a", "a", "b", "a", "c", "a", "a"]);
    const big = [worker("x", { weight: 5, free: 100 }), worker("y", { weight: 3, free: 100 }), worker("z", { weight: 2, free: 100 })];
    expect(counts(round(createStrategy("weighted_round_robin"), big, 100))).toEqual({ x: 50, y: 30, z: 20 });
  });

  it("keeps the state of exactly the used picks across rounds", () => {
    const ws = [worker("a", { weight: 3 }), worker("b", { weight: 1 })];
    const oneByOne = createStrategy("weighted_round_robin");
    expect(Array.from({ length: 8 }, () => round(oneByOne, ws, 1)[0])).toEqual(["a", "a", "b", "a", "a", "a", "b", "a"]);
    const partial = createStrategy("weighted_round_robin");
    const plan = partial.plan("cap", ws, 4);
    expect(plan.slots).toEqual(["a", "a", "b", "a"]);
    plan.commit(2);
    expect(round(partial, ws, 2)).toEqual(["b", "a"]);
    const none = createStrategy("weighted_round_robin");
    none.plan("cap", ws, 4).commit(0);
    expect(round(none, ws, 4)).toEqual(["a", "a", "b", "a"]);
  });

  it("skips a full worker and hands its turns to the others", () => {
    const s = createStrategy("weighted_round_robin");
    expect(round(s, [worker("a", { weight: 3, free: 1 }), worker("b", { weight: 1 })], 4)).toEqual(["a", "b", "b", "b"]);
  });
});

describe("parseStrategy", () => {
  it("accepts exactly the six names", () => {
    for (const name of STRATEGIES) expect(parseStrategy(name)).toBe(name satisfies StrategyName);
  });

  it.each([["Least-Loaded"], [" least_loaded"], ["least-loaded"], [""], [1], [null], [undefined], [["random"]], [{ name: "random" }]])(
    "rejects %j, listing the valid names",
    (value) => {
      expect(() => parseStrategy(value)).toThrow(
        'must be one of "round_robin", "least_loaded", "random", "capability_best", "latency", "weighted_round_robin"',
      );
    },
  );
});
