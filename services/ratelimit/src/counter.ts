import { Redis } from "ioredis";
import type { Logger } from "@taskmesh/kit";
import { SLIDING_WINDOW_LUA } from "./sliding-window-script.js";

/** One counter a request is checked against: its Redis key, its limit and window. */
export interface WindowCheck {
  /** The counter's key (see {@link counterKey}), without the counter's prefix. */
  readonly key: string;
  readonly requests: number;
  readonly windowMs: number;
}

/** Where one counter stands after a request. */
export interface WindowResult {
  /** This counter alone refused the request. */
  readonly over: boolean;
  /** Hits left in the window (after this request when it was admitted). */
  readonly remaining: number;
  /** Until the budget grows again (admitted), or until this request would fit (refused), in ms. */
  readonly resetMs: number;
}

/** The outcome of one request: admitted (counted on every counter) or refused (counted on none). */
export interface HitOutcome {
  readonly admitted: boolean;
  /** One per check, in order. */
  readonly results: readonly WindowResult[];
}

/** Checks and counts requests against sliding windows; the handlers' view of Redis. */
export interface HitCounter {
  /** Checks `checks` (all in one domain) and, when every one has room, counts `hits` on each. Rejects when the store cannot answer. */
  hit(domain: string, checks: readonly WindowCheck[], hits: number): Promise<HitOutcome>;
}

/** Options of a {@link RedisCounter}. */
export interface RedisCounterOptions {
  /** `redis://host:port[/db]`. */
  readonly url: string;
  /** Prefix of every key. @default "taskmesh:ratelimit:" */
  readonly prefix?: string;
  /** Longest wait for one Redis command, in ms, before answering per the failure mode. @default 100 */
  readonly timeoutMs?: number;
  readonly logger: Logger;
}

/** The key of one counter: the limit and the descriptor's values it counts for, in its domain. */
export function counterKey(domain: string, limitName: string, entries: readonly { key: string; value: string }[]): string {
  // The domain is a hash tag: one request's counters share a Redis Cluster slot, as one script needs.
  return `{${encodeURIComponent(domain)}}:${limitName}:${entries.map((e) => `${encodeURIComponent(e.key)}=${encodeURIComponent(e.value)}`).join("/")}`;
}

type ScriptRunner = (numKeys: number, ...args: Array<string | number>) => Promise<number[]>;

/**
 * Sliding-window counters in Redis: one Lua script per request checks and
 * counts all its descriptors in one round trip. Commands are bounded by a
 * timeout and never queued while Redis is unreachable, so a request fails
 * fast and the caller answers per its failure mode; the connection comes
 * back on its own. Logs once when Redis goes away and once when it is back.
 */
export class RedisCounter implements HitCounter {
  private readonly redis: Redis;
  private readonly prefix: string;
  private readonly log: Logger;
  private readonly run: ScriptRunner;
  private down = false;

  constructor(options: RedisCounterOptions) {
    const timeoutMs = options.timeoutMs ?? 100;
    this.prefix = options.prefix ?? "taskmesh:ratelimit:";
    this.log = options.logger;
    this.redis = new Redis(options.url, {
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: timeoutMs,
      connectTimeout: Math.max(timeoutMs, 1000),
      // Reconnect for ever, at most a second apart.
      retryStrategy: (times) => Math.min(100 * times, 1000),
      connectionName: "taskmesh-ratelimit",
    });
    this.redis.on("error", (error: Error) => this.failed(error));
    this.redis.on("ready", () => this.recovered());
    this.redis.defineCommand("taskmeshRateLimitHit", { lua: SLIDING_WINDOW_LUA });
    const command = (this.redis as unknown as Record<string, ScriptRunner>).taskmeshRateLimitHit!;
    this.run = command.bind(this.redis);
  }

  /** Connects and checks that Redis answers. */
  async connect(): Promise<void> {
    if (this.redis.status === "wait") await this.redis.connect();
    await this.redis.ping();
  }

  /** Closes the connection. */
  close(): void {
    this.redis.disconnect();
  }

  async hit(domain: string, checks: readonly WindowCheck[], hits: number): Promise<HitOutcome> {
    const keys: string[] = [];
    const args: Array<string | number> = [hits];
    for (const check of checks) {
      keys.push(`${this.prefix}${check.key}:log`, `${this.prefix}${check.key}:sum`);
      args.push(check.requests, check.windowMs);
    }
    keys.push(`${this.prefix}{${encodeURIComponent(domain)}}:seq`);
    let reply: number[];
    try {
      reply = await this.run(keys.length, ...keys, ...args);
    } catch (error) {
      this.failed(error);
      throw error;
    }
    this.recovered();
    const results: WindowResult[] = checks.map((_, i) => ({
      over: reply[1 + 3 * i] === 1,
      remaining: Number(reply[2 + 3 * i]),
      resetMs: Number(reply[3 + 3 * i]),
    }));
    return { admitted: reply[0] === 1, results };
  }

  private failed(error: unknown): void {
    if (this.down) {
      this.log.debug({ err: error }, "redis still unavailable");
      return;
    }
    this.down = true;
    this.log.warn({ err: error }, "redis unavailable: answering per the failure mode until it is back");
  }

  private recovered(): void {
    if (!this.down) return;
    this.down = false;
    this.log.info("redis is back: counting resumed");
  }
}
