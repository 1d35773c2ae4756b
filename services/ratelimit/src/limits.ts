import { z } from "zod";
import type { RateLimitDescriptor_Entry } from "@taskmesh/contracts/gen/envoy/extensions/common/ratelimit/v3/ratelimit";
import { RateLimitResponse_RateLimit_Unit } from "@taskmesh/contracts/gen/envoy/service/ratelimit/v3/rls";
import { EDGE_DESCRIPTOR_KEYS } from "@taskmesh/contracts/ratelimit";

/** Config key of the limit set: a JSON object from limit name to {@link LimitSpec}. */
export const LIMITS_KEY = "/ratelimit/limits";

/** The periods a limit can count over, with their window length in ms and Envoy's unit. */
export const PERIODS = {
  second: { ms: 1000, unit: RateLimitResponse_RateLimit_Unit.SECOND },
  minute: { ms: 60_000, unit: RateLimitResponse_RateLimit_Unit.MINUTE },
  hour: { ms: 3_600_000, unit: RateLimitResponse_RateLimit_Unit.HOUR },
  day: { ms: 86_400_000, unit: RateLimitResponse_RateLimit_Unit.DAY },
} as const;

/** A period a limit counts over. */
export type Period = keyof typeof PERIODS;

/** Most entries a limit's descriptor may have. */
export const MAX_DESCRIPTOR_ENTRIES = 8;
/** Most limits one set may hold. */
export const MAX_LIMITS = 1000;

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

const entrySchema = z.strictObject({
  key: z.string().min(1).max(128),
  value: z.string().min(1).max(1024).optional(),
});

/**
 * Where a limit is counted: `global` in Redis by this service, shared by
 * every edge (exact across replicas, a round trip per request); `edge` by
 * each edge Envoy itself (its local rate limit, which this service
 * configures over ECDS: no call at all, a budget per edge instance).
 */
export const SCOPES = ["global", "edge"] as const;
/** Where a limit is counted. */
export type Scope = (typeof SCOPES)[number];

const specSchema = z.strictObject({
  descriptor: z.array(entrySchema).min(1).max(MAX_DESCRIPTOR_ENTRIES).refine(
    (entries) => new Set(entries.map((e) => e.key)).size === entries.length, "a key may appear only once"),
  requests: z.number().int().positive().max(1_000_000_000),
  per: z.enum(Object.keys(PERIODS) as [Period, ...Period[]]),
  scope: z.enum(SCOPES).default("global"),
}).superRefine((spec, ctx) => {
  if (spec.scope !== "edge") return;
  spec.descriptor.forEach((e, i) => {
    if (!(EDGE_DESCRIPTOR_KEYS as readonly string[]).includes(e.key)) {
      ctx.addIssue({ code: "custom", path: ["descriptor", i, "key"], message: `an edge limit counts only what the edge knows: ${EDGE_DESCRIPTOR_KEYS.join(", ")}` });
    }
  });
});

/** One limit as written in config: `{"descriptor":[{"key":"subject"}],"requests":5,"per":"minute"}`. */
export type LimitSpec = z.input<typeof specSchema>;

/** One entry of a limit's descriptor: a key, and the value it must have (any value when absent: counted per value). */
export interface LimitEntry {
  readonly key: string;
  readonly value?: string;
}

/** A parsed limit. */
export interface Limit {
  /** Its name in the set (the config object's key). */
  readonly name: string;
  readonly entries: readonly LimitEntry[];
  /** Requests admitted in any window of `windowMs`. */
  readonly requests: number;
  readonly per: Period;
  readonly windowMs: number;
  /** Where it is counted. */
  readonly scope: Scope;
}

/** The set of limits in force, and which global one applies to a descriptor. */
export class LimitSet {
  /** Global limits by their descriptor's key list, most specific first. */
  private readonly byKeys = new Map<string, Limit[]>();
  /** The limits this service counts (scope `global`). */
  readonly global: readonly Limit[];
  /** The limits each edge counts itself (scope `edge`). */
  readonly edge: readonly Limit[];

  constructor(readonly limits: readonly Limit[]) {
    const all = new Map<string, Limit[]>();
    for (const limit of limits) {
      const signature = keysOf(limit.entries);
      const group = all.get(signature) ?? [];
      const twin = group.find((other) => other.entries.every((e, i) => e.value === limit.entries[i]!.value));
      if (twin) throw new Error(`limits "${twin.name}" and "${limit.name}" have the same descriptor`);
      group.push(limit);
      all.set(signature, group);
    }
    for (const [signature, group] of all) {
      const global = group.filter((l) => l.scope === "global").sort(bySpecificity);
      if (global.length > 0) this.byKeys.set(signature, global);
    }
    this.global = limits.filter((l) => l.scope === "global");
    this.edge = limits.filter((l) => l.scope === "edge");
  }

  /** The empty set: nothing is limited. */
  static readonly EMPTY = new LimitSet([]);

  /** How many limits the set holds. */
  get size(): number {
    return this.limits.length;
  }

  /**
   * The global limit for a request's descriptor: among the global limits with the same
   * keys in the same order whose values all match, the most specific one
   * (see {@link bySpecificity}); undefined when none matches.
   */
  match(entries: readonly Pick<RateLimitDescriptor_Entry, "key" | "value">[]): Limit | undefined {
    const group = this.byKeys.get(keysOf(entries));
    return group?.find((limit) => limit.entries.every((e, i) => e.value === undefined || e.value === entries[i]!.value));
  }
}

function keysOf(entries: readonly { key: string }[]): string {
  return JSON.stringify(entries.map((e) => e.key));
}

/**
 * Orders limits with the same keys, most specific first, as Envoy's own rate
 * limit service walks its descriptor tree: at the first entry where they
 * differ, the one that names a value beats the one that takes any value.
 */
function bySpecificity(a: Limit, b: Limit): number {
  for (let i = 0; i < a.entries.length; i++) {
    const av = a.entries[i]!.value !== undefined;
    const bv = b.entries[i]!.value !== undefined;
    if (av !== bv) return av ? -1 : 1;
  }
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

/**
 * Parses the value of {@link LIMITS_KEY}: a JSON object from limit name to
 * limit. Throws, naming the limit and field, when anything is malformed, so
 * that the whole value is refused and the last good set stays in force.
 */
export function parseLimits(value: unknown): LimitSet {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new Error(`${LIMITS_KEY} must be a JSON object from limit name to limit`);
  }
  const names = Object.keys(value);
  if (names.length > MAX_LIMITS) throw new Error(`at most ${MAX_LIMITS} limits, got ${names.length}`);
  const limits = names.map((name) => {
    if (!NAME.test(name)) throw new Error(`limit name ${JSON.stringify(name)}: expected 1-64 of A-Z a-z 0-9 . _ -, not starting with . _ -`);
    const parsed = specSchema.safeParse((value as Record<string, unknown>)[name]);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      const at = issue.path.length > 0 ? issue.path.map((p) => (typeof p === "number" ? `[${p}]` : `.${String(p)}`)).join("").replace(/^\./, "") : "limit";
      throw new Error(`limit "${name}": ${at}: ${issue.message}`);
    }
    const spec = parsed.data;
    return {
      name,
      entries: spec.descriptor.map((e) => (e.value === undefined ? { key: e.key } : { key: e.key, value: e.value })),
      requests: spec.requests,
      per: spec.per,
      windowMs: PERIODS[spec.per].ms,
      scope: spec.scope,
    } satisfies Limit;
  });
  return new LimitSet(limits);
}
