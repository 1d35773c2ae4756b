import type { Redis } from "ioredis";

/** Where a group's failed-delivery counts are kept, so they survive a subscriber's reconnect. */
export interface AttemptStore {
  /** The failed deliveries recorded for each key (0 when none). */
  load(keys: readonly string[]): Promise<number[]>;
  /** Records `failures` for a key. */
  record(key: string, failures: number): Promise<void>;
  /** Forgets a settled key. */
  clear(key: string): Promise<void>;
}

/** The key of one record's count in one group. */
export function attemptKey(group: string, topic: string, partition: number, offset: bigint): string {
  return `${group}\u0000${topic}\u0000${partition}\u0000${offset}`;
}

/**
 * Failed-delivery counts in Redis (`taskmesh:events:attempts:<sha of the key>`,
 * kept 7 days). Best effort: while Redis is down counts start from 0 and
 * live only in the subscription.
 */
export class RedisAttempts implements AttemptStore {
  constructor(private readonly redis: Redis, private readonly prefix = "taskmesh:events:attempts:", private readonly ttlMs = 7 * 24 * 3_600_000) {}

  #key(key: string): string {
    return this.prefix + Buffer.from(key).toString("base64url");
  }

  async load(keys: readonly string[]): Promise<number[]> {
    if (keys.length === 0) return [];
    try {
      const values = await this.redis.mget(...keys.map((k) => this.#key(k)));
      return values.map((v) => Number(v ?? 0) || 0);
    } catch {
      return keys.map(() => 0);
    }
  }

  async record(key: string, failures: number): Promise<void> {
    await this.redis.set(this.#key(key), String(failures), "PX", this.ttlMs).catch(() => undefined);
  }

  async clear(key: string): Promise<void> {
    await this.redis.del(this.#key(key)).catch(() => undefined);
  }
}

/**
 * The failed-delivery counts of one subscription's group and topic: kept in
 * the store for named groups, nowhere for private ones (nobody else gets
 * their events) or without a store.
 */
export class GroupAttempts {
  readonly #store: AttemptStore | undefined;

  constructor(store: AttemptStore | undefined, private readonly group: string, private readonly topic: string, named: boolean) {
    this.#store = named ? store : undefined;
  }

  /** The failures recorded for these offsets of `partition` (only those above 0). */
  async load(partition: number, offsets: readonly bigint[]): Promise<Map<bigint, number>> {
    const found = new Map<bigint, number>();
    if (!this.#store || offsets.length === 0) return found;
    const counts = await this.#store.load(offsets.map((o) => attemptKey(this.group, this.topic, partition, o)));
    offsets.forEach((o, i) => {
      if (counts[i]! > 0) found.set(o, counts[i]!);
    });
    return found;
  }

  record(partition: number, offset: bigint, failures: number): Promise<void> {
    return this.#store?.record(attemptKey(this.group, this.topic, partition, offset), failures) ?? Promise.resolve();
  }

  clear(partition: number, offset: bigint): void {
    void this.#store?.clear(attemptKey(this.group, this.topic, partition, offset));
  }
}
