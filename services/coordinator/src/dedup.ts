import { createHash } from "node:crypto";
import type { Redis } from "ioredis";
import { Code, MeshError, type Logger } from "@taskmesh/kit";

/** What Redis remembers of one idempotency key. */
interface Remembered {
  /** The task the key names. */
  readonly taskId: string;
  readonly hash: string;
  /** The ledger has the task (a repeat may read it instead of creating it). */
  readonly committed: boolean;
}

/** What a submit with an idempotency key should do. */
export type DedupPlan =
  /** Create the task under this id (new, or a repeat that raced the first). */
  | { readonly action: "create"; readonly taskId: string }
  /** The task exists: read it and answer deduplicated. */
  | { readonly action: "read"; readonly taskId: string };

/** How long Redis remembers a key; the ledger's unique key holds for as long as the task. */
const TTL_SECONDS = 24 * 3600;

/**
 * The submit dedup fast path in Redis, in front of the ledger's unique
 * (subject, idempotency key): a repeat is answered by reading its task (or
 * refused for another request's key) without a write transaction. Redis is
 * only a cache: when it is down, or forgot a key, the ledger decides.
 */
export class SubmitDedup {
  constructor(private readonly redis: Redis, private readonly log: Logger) {}

  private key(subject: string, idempotencyKey: string): string {
    // Hashed so subjects and keys of any characters make one safe key.
    return `taskmesh:idem:${createHash("sha256").update(`${subject}\u0000${idempotencyKey}`).digest("base64url")}`;
  }

  /**
   * Decides what a submit under `idempotencyKey` does: create under
   * `newTaskId`, create under the id an earlier attempt reserved, or read the
   * existing task. ALREADY_EXISTS when the key belongs to another request.
   */
  async plan(subject: string, idempotencyKey: string, hash: string, newTaskId: string): Promise<DedupPlan> {
    const key = this.key(subject, idempotencyKey);
    try {
      for (let round = 0; round < 2; round++) {
        const seen = await this.redis.get(key);
        if (seen !== null) {
          const remembered = JSON.parse(seen) as Remembered;
          if (remembered.hash !== hash) throw keyReused(remembered.taskId);
          return { action: remembered.committed ? "read" : "create", taskId: remembered.taskId };
        }
        const mine: Remembered = { taskId: newTaskId, hash, committed: false };
        if (await this.redis.set(key, JSON.stringify(mine), "EX", TTL_SECONDS, "NX")) return { action: "create", taskId: newTaskId };
      }
    } catch (error) {
      if (error instanceof MeshError) throw error;
      this.log.debug({ err: error }, "submit dedup: redis unavailable, the ledger decides");
    }
    return { action: "create", taskId: newTaskId };
  }

  /** Records that the ledger holds the task the key names (`taskId` may differ from the planned one when Redis had forgotten the key). */
  async committed(subject: string, idempotencyKey: string, hash: string, taskId: string): Promise<void> {
    const value: Remembered = { taskId, hash, committed: true };
    await this.redis.set(this.key(subject, idempotencyKey), JSON.stringify(value), "EX", TTL_SECONDS).catch((error: Error) => {
      this.log.debug({ err: error }, "submit dedup: could not record a committed key");
    });
  }
}

/** ALREADY_EXISTS for a key used by another request, as the ledger answers it. */
export function keyReused(taskId: string): MeshError {
  return new MeshError({
    code: Code.ALREADY_EXISTS, reason: "RES_IDEMPOTENCY_KEY_REUSED",
    message: "the idempotency key was used for a different request", metadata: { task_id: taskId },
  });
}
