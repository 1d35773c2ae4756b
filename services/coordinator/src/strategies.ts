/**
 * The coordinator's dispatch strategies. For each round a strategy turns the
 * workers able to take one capability into a plan: worker slots in pick order,
 * one per task that worker would get. The ledger fills the slots in order, and
 * the plan's `commit(used)` then advances the strategy as if only the first
 * `used` picks had happened. Pure and synchronous: no clock, no I/O.
 *
 * Every strategy simulates its picks one at a time over the candidates sorted
 * by workerId (so input order never matters): a pick adds one to that worker's
 * in-flight count and takes one of its free slots for the later picks.
 *
 * A plan keeps the strategy state after each of its picks, and `commit(used)`
 * stores the one after `used` picks (once per plan; a second commit throws).
 * Commit the latest plan of a capability: committing an older one rewinds the
 * capability's state to that plan's.
 */

/** The strategy names, as written in config key `/coordinator/dispatch/strategy` (a JSON string). */
export const STRATEGIES = ["round_robin", "least_loaded", "random", "capability_best", "latency", "weighted_round_robin"] as const;
export type StrategyName = (typeof STRATEGIES)[number];

/** One worker that could take tasks of the capability being planned. */
export interface Candidate {
  readonly workerId: string;
  /** Tasks it holds now, all capabilities. */
  readonly inFlight: number;
  /** Its total slots (1..1000). */
  readonly maxConcurrency: number;
  /** Free slots for this capability now (already min of the capability's and the total's free slots); candidates with 0 may be passed and must never be picked. */
  readonly free: number;
  /** Weight for weighted round robin, 1..100. */
  readonly weight: number;
  /** EWMA of assignment→result time of this worker in ms; undefined when unknown. */
  readonly latencyEwmaMs: number | undefined;
  /** Outcomes of this worker for this capability so far. */
  readonly successes: number;
  readonly failures: number;
  /** Mean run time of this worker for this capability in ms; undefined when unknown. */
  readonly meanDurationMs: number | undefined;
}

/** A strategy's picks for one round. */
export interface Plan {
  /** Worker ids in pick order; each candidate at most `free` times; length min(max, total free). */
  readonly slots: readonly string[];
  /** Advances the strategy's state as if only the first `used` picks were made (0 ≤ used ≤ slots.length). */
  commit(used: number): void;
}

export interface Strategy {
  readonly name: StrategyName;
  plan(capability: string, candidates: readonly Candidate[], max: number): Plan;
}

/** A candidate as a plan sees it after the picks so far. */
interface Load {
  readonly c: Candidate;
  readonly inFlight: number;
  readonly free: number;
}

/** One pick: the index of the chosen load in the pool, and the strategy state after it. */
interface Pick<S> {
  readonly index: number;
  readonly state: S;
}

/** Chooses the next pick from the pool (the loads with a free slot; never empty; in workerId order). */
type Step<S> = (pool: readonly Load[], state: S) => Pick<S>;

/** A strategy's rule: its state before a capability's first round, and the step for one plan's candidates (in workerId order). */
interface Policy<S> {
  readonly initial: S;
  stepFor(candidates: readonly Candidate[]): Step<S>;
}

/** Orders two loads: negative when `a` should be picked before `b`, 0 when tied. */
type Compare = (a: Load, b: Load) => number;

/** A new strategy with its own state (cursors, current weights); `random` for tests. */
export function createStrategy(name: StrategyName, random: () => number = Math.random): Strategy {
  switch (name) {
    case "round_robin":
      return strategyOf(name, rotating(() => allEqual));
    case "least_loaded":
      return strategyOf(name, rotating(() => byLoad));
    case "random":
      return strategyOf(name, randomPolicy(random));
    case "capability_best":
      return strategyOf(name, rotating(capabilityBestOrder));
    case "latency":
      return strategyOf(name, rotating(() => latencyOrder));
    case "weighted_round_robin":
      return strategyOf(name, smoothWeighted);
  }
}

/** The strategy name a config value names; throws for anything but one of the exact names. */
export function parseStrategy(value: unknown): StrategyName {
  if (typeof value === "string" && (STRATEGIES as readonly string[]).includes(value)) return value as StrategyName;
  const got = typeof value === "string" ? JSON.stringify(value) : `a ${value === null ? "null" : typeof value}`;
  throw new Error(`unknown dispatch strategy ${got}: must be one of ${STRATEGIES.map((s) => `"${s}"`).join(", ")}`);
}

/** Binds a policy to per-capability state and the plan/commit protocol. */
function strategyOf<S>(name: StrategyName, policy: Policy<S>): Strategy {
  const states = new Map<string, S>();
  return {
    name,
    plan(capability, candidates, max) {
      const from = states.has(capability) ? (states.get(capability) as S) : policy.initial;
      const loads = loadsOf(candidates);
      const run = simulate(loads, pickLimit(max), from, policy.stepFor(loads.map((l) => l.c)));
      let committed = false;
      return {
        slots: run.slots,
        commit(used) {
          if (!Number.isInteger(used) || used < 0 || used > run.slots.length) {
            throw new RangeError(`commit(used): used must be an integer in 0..${run.slots.length}, got ${used}`);
          }
          if (committed) throw new Error("commit(used): this plan was already committed");
          committed = true;
          states.set(capability, run.states[used] as S);
        },
      };
    },
  };
}

/** Runs up to `limit` picks; `states[k]` is the state after the first k picks. */
function simulate<S>(loads: readonly Load[], limit: number, initial: S, step: Step<S>): { slots: string[]; states: S[] } {
  const slots: string[] = [];
  const states: S[] = [initial];
  let current = loads;
  let state = initial;
  while (slots.length < limit) {
    const pool = current.filter((l) => l.free > 0);
    if (pool.length === 0) break;
    const pick = step(pool, state);
    const chosen = pool[pick.index]!;
    slots.push(chosen.c.workerId);
    state = pick.state;
    states.push(state);
    current = current.map((l) => (l === chosen ? { c: l.c, inFlight: l.inFlight + 1, free: l.free - 1 } : l));
  }
  return { slots, states };
}

/** The candidates as loads in workerId order, free slots as a whole number ≥ 0; duplicate ids are a caller bug. */
function loadsOf(candidates: readonly Candidate[]): Load[] {
  const loads = candidates
    .map((c) => ({ c, inFlight: c.inFlight, free: Number.isFinite(c.free) ? Math.max(0, Math.floor(c.free)) : 0 }))
    .sort((a, b) => compareIds(a.c.workerId, b.c.workerId));
  loads.forEach((l, i) => {
    if (i > 0 && loads[i - 1]!.c.workerId === l.c.workerId) throw new Error(`dispatch candidates: worker ${l.c.workerId} listed twice`);
  });
  return loads;
}

/** How many picks `max` allows: a whole number ≥ 0. */
function pickLimit(max: number): number {
  return Number.isFinite(max) ? Math.max(0, Math.floor(max)) : 0;
}

/** Code-unit order of worker ids, independent of locale. */
function compareIds(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * A policy that picks the best load by `orderFor(candidates)` and rotates
 * among ties: the state is the last worker picked, and of the tied loads the
 * first one after it (by workerId, wrapping) is chosen, so equal workers take
 * turns within a plan and across rounds. With an order that ties everything
 * this is plain round robin.
 */
function rotating(orderFor: (candidates: readonly Candidate[]) => Compare): Policy<string | undefined> {
  return {
    initial: undefined,
    stepFor(candidates) {
      const order = orderFor(candidates);
      return (pool, last) => {
        const index = bestAfter(pool, order, last);
        return { index, state: pool[index]!.c.workerId };
      };
    },
  };
}

/** Index of the best load under `order`; among ties the first whose id follows `last`, else the first. */
function bestAfter(pool: readonly Load[], order: Compare, last: string | undefined): number {
  let best = 0;
  for (let i = 1; i < pool.length; i++) if (order(pool[i]!, pool[best]!) < 0) best = i;
  let wrap = -1;
  for (let i = 0; i < pool.length; i++) {
    if (order(pool[i]!, pool[best]!) !== 0) continue;
    if (last === undefined || pool[i]!.c.workerId > last) return i;
    if (wrap < 0) wrap = i;
  }
  return wrap;
}

/** Ties every pair: round robin's order, where only the rotation decides. */
function allEqual(): number {
  return 0;
}

/** Lower in-flight/maxConcurrency ratio first (exact, by cross-multiplying), then fewer tasks in flight. */
function byLoad(a: Load, b: Load): number {
  return a.inFlight * b.c.maxConcurrency - b.inFlight * a.c.maxConcurrency || a.inFlight - b.inFlight;
}

/**
 * capability_best: higher smoothed success rate (s+1)/(s+f+2) first, then the
 * shorter mean run time, then load. An unknown run time counts as the mean of
 * the known ones among this round's candidates: neutral, so a worker is
 * neither favoured nor held back for lack of data (its smoothed rate already
 * leans towards 1/2 until it has outcomes).
 */
function capabilityBestOrder(candidates: readonly Candidate[]): Compare {
  const known = candidates.map((c) => c.meanDurationMs).filter((d): d is number => d !== undefined && Number.isFinite(d));
  const fallback = known.length > 0 ? known.reduce((sum, d) => sum + d, 0) / known.length : 0;
  const duration = (l: Load): number => l.c.meanDurationMs ?? fallback;
  return (a, b) => bySuccessRate(a, b) || duration(a) - duration(b) || byLoad(a, b);
}

/** Higher smoothed success rate first, compared exactly by cross-multiplying. */
function bySuccessRate(a: Load, b: Load): number {
  const runs = (l: Load): number => l.c.successes + l.c.failures + 2;
  return (b.c.successes + 1) * runs(a) - (a.c.successes + 1) * runs(b);
}

/**
 * latency: peak-EWMA as in Linkerd and Finagle: cost = latency EWMA × (tasks in
 * flight + 1), lowest first, then load. An unknown latency costs 0, so a new
 * worker is tried first and gets a measurement.
 */
function latencyOrder(a: Load, b: Load): number {
  const cost = (l: Load): number => (l.c.latencyEwmaMs ?? 0) * (l.inFlight + 1);
  return cost(a) - cost(b) || byLoad(a, b);
}

/** random: each pick uniform over the loads with a free slot; no state. */
function randomPolicy(random: () => number): Policy<null> {
  return {
    initial: null,
    stepFor: () => (pool) => ({ index: Math.min(pool.length - 1, Math.floor(random() * pool.length)), state: null }),
  };
}

/**
 * weighted_round_robin: nginx's smooth weighted round robin. Each pick, every
 * worker with a free slot gains its weight; the highest current weight (first
 * by workerId on ties) is picked and loses the sum of those weights. The state
 * is the current weights of this round's candidates (absent workers are dropped).
 */
const smoothWeighted: Policy<ReadonlyMap<string, number>> = {
  initial: new Map(),
  stepFor(candidates) {
    const ids = candidates.map((c) => c.workerId);
    return (pool, current) => {
      const next = new Map(ids.map((id) => [id, current.get(id) ?? 0]));
      let total = 0;
      let best = 0;
      pool.forEach((l, i) => {
        const w = weightOf(l.c);
        total += w;
        next.set(l.c.workerId, next.get(l.c.workerId)! + w);
        if (next.get(l.c.workerId)! > next.get(pool[best]!.c.workerId)!) best = i;
      });
      const id = pool[best]!.c.workerId;
      next.set(id, next.get(id)! - total);
      return { index: best, state: next };
    };
  },
};

/** A candidate's weight as a whole number in 1..100. */
function weightOf(c: Candidate): number {
  return Number.isFinite(c.weight) ? Math.min(100, Math.max(1, Math.floor(c.weight))) : 1;
}
