import { createHash } from "node:crypto";
import type { Redis } from "ioredis";
import { Code, MeshError, unavailable } from "@taskmesh/kit";

/** Where a published event landed, and the event as stored (proto3 JSON). */
export interface Landed {
  readonly topic: string;
  readonly partition: number;
  readonly offset: string;
  readonly event: unknown;
}

/** What Redis holds for one (source, id). */
interface Entry {
  readonly hash: string;
  /** Absent while the first publish is in flight. */
  readonly landed?: Landed;
}

/** The outcome of claiming a (source, id). */
export type Claim =
  | { readonly kind: "new" }
  | { readonly kind: "duplicate"; readonly landed: Landed };

/** Options of {@link PublishDedup}; durations in ms. */
export interface PublishDedupOptions {
  /** Key prefix. @default taskmesh:events:pub: */
  readonly prefix?: string;
  /** How long a landed (source, id) is remembered. @default 24h (the contract's minimum) */
  readonly ttlMs?: number;
  /** How long a claim without a landing holds (a publisher that died mid-publish releases it so). @default 30s */
  readonly claimMs?: number;
  /** How long a repeat waits for a concurrent first publish to land. @default 10s */
  readonly waitMs?: number;
}

/**
 * Publish idempotency by (source, id), in Redis: the first publish claims
 * the key with `SET NX` (content hash, no position yet, short TTL), sends to
 * Kafka, then records where the event landed with a 24 h TTL. A repeat with
 * the same content hash gets the recorded position (waiting for a first
 * publish still in flight); with a different hash, ALREADY_EXISTS
 * (RES_EVENT_ID_REUSED). Redis down: UNAVAILABLE, since publishing blind
 * could write a duplicate.
 */
export class PublishDedup {
  readonly #prefix: string;
  readonly #ttlMs: number;
  readonly #claimMs: number;
  readonly #waitMs: number;

  constructor(private readonly redis: Redis, options: PublishDedupOptions = {}) {
    this.#prefix = options.prefix ?? "taskmesh:events:pub:";
    this.#ttlMs = options.ttlMs ?? 24 * 3_600_000;
    this.#claimMs = options.claimMs ?? 30_000;
    this.#waitMs = options.waitMs ?? 10_000;
  }

  /** The Redis key of a (source, id): hashed, so any characters make one safe key. */
  key(source: string, id: string): string {
    return this.#prefix + createHash("sha256").update(`${source}\u0000${id}`).digest("base64url");
  }

  /** Claims (source, id) for a first publish, or returns the first publish's landing; throws ALREADY_EXISTS for other content. */
  async claim(source: string, id: string, hash: string, signal?: AbortSignal): Promise<Claim> {
    const key = this.key(source, id);
    const until = Date.now() + this.#waitMs;
    for (;;) {
      const mine: Entry = { hash };
      const set = await this.#call(() => this.redis.set(key, JSON.stringify(mine), "PX", this.#claimMs, "NX"));
      if (set === "OK") return { kind: "new" };
      const raw = await this.#call(() => this.redis.get(key));
      if (raw !== null) {
        const entry = JSON.parse(raw) as Entry;
        if (entry.hash !== hash) {
          throw new MeshError({
            code: Code.ALREADY_EXISTS, reason: "RES_EVENT_ID_REUSED",
            message: "this (source, id) was published with different content", metadata: { source, id },
          });
        }
        if (entry.landed) return { kind: "duplicate", landed: entry.landed };
      }
      if (Date.now() > until) throw unavailable("SYS_PUBLISH_IN_PROGRESS", "the same event is being published by another call; retry", 1000);
      signal?.throwIfAborted();
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Records where a claimed event landed (kept for the TTL). */
  async landed(source: string, id: string, hash: string, landed: Landed): Promise<void> {
    const entry: Entry = { hash, landed };
    await this.#call(() => this.redis.set(this.key(source, id), JSON.stringify(entry), "PX", this.#ttlMs));
  }

  /** Releases a claim whose publish failed, so a retry can publish. */
  async release(source: string, id: string): Promise<void> {
    await this.redis.del(this.key(source, id)).catch(() => undefined);
  }

  async #call<T>(op: () => Promise<T>): Promise<T> {
    try {
      return await op();
    } catch (error) {
      throw unavailable("EXT_REDIS_UNAVAILABLE", "the publish dedup store (Redis) is unavailable", 1000, error);
    }
  }
}
