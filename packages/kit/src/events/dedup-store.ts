import type { Redis } from "ioredis";

/** What claiming an event id found. */
export type ClaimOutcome =
  /** This consumer may process it now (it holds a lease on the id). */
  | "claimed"
  /** It was processed already: skip it. */
  | "done"
  /** Another consumer is processing it right now: try again later. */
  | "busy";

/** Remembers which event ids a consumer group has processed. */
export interface DedupStore {
  /** Claims `key` for processing, for at most `leaseMs` (a consumer that dies releases it so). */
  claim(key: string, leaseMs: number): Promise<ClaimOutcome>;
  /** Marks `key` processed, remembered for `ttlMs`. */
  complete(key: string, ttlMs: number): Promise<void>;
  /** Gives up a claim (the handler failed), so a redelivery processes it. */
  release(key: string): Promise<void>;
}

const PENDING = "pending";
const DONE = "done";

/**
 * A {@link DedupStore} in Redis: `SET key pending NX PX <lease>` claims an
 * id, `SET key done PX <ttl>` records it processed; a claim that finds
 * `done` skips, one that finds `pending` is busy.
 */
export class RedisDedupStore implements DedupStore {
  constructor(private readonly redis: Redis) {}

  async claim(key: string, leaseMs: number): Promise<ClaimOutcome> {
    if ((await this.redis.set(key, PENDING, "PX", leaseMs, "NX")) === "OK") return "claimed";
    const value = await this.redis.get(key);
    if (value === DONE) return "done";
    if (value === null) return this.claim(key, leaseMs); // the claim expired in between
    return "busy";
  }

  async complete(key: string, ttlMs: number): Promise<void> {
    await this.redis.set(key, DONE, "PX", ttlMs);
  }

  async release(key: string): Promise<void> {
    // Only a pending claim: never forget an id that is done.
    await this.redis.eval("if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0", 1, key, PENDING);
  }
}

/** A {@link DedupStore} in memory: for one process, and for tests. */
export class MemoryDedupStore implements DedupStore {
  readonly #entries = new Map<string, { value: string; until: number }>();

  async claim(key: string, leaseMs: number): Promise<ClaimOutcome> {
    const now = Date.now();
    const entry = this.#entries.get(key);
    if (entry && entry.until > now) return entry.value === DONE ? "done" : "busy";
    this.#entries.set(key, { value: PENDING, until: now + leaseMs });
    return "claimed";
  }

  async complete(key: string, ttlMs: number): Promise<void> {
    this.#entries.set(key, { value: DONE, until: Date.now() + ttlMs });
  }

  async release(key: string): Promise<void> {
    if (this.#entries.get(key)?.value === PENDING) this.#entries.delete(key);
  }
}
