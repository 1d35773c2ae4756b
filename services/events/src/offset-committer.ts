import type { Logger } from "@taskmesh/kit";
import type { PartitionTracker } from "./partition-tracker.js";

/** The longest wait before a failed commit is tried again, in ms. */
export const MAX_RETRY_MS = 2000;

/** One partition's offset to commit. */
export interface TopicPartitionOffset {
  readonly topic: string;
  readonly partition: number;
  readonly offset: string;
}

/** Options of an {@link OffsetCommitter}. */
export interface OffsetCommitterOptions {
  readonly topic: string;
  /** The partitions held now, each with its tracker. */
  readonly trackers: ReadonlyMap<number, PartitionTracker>;
  /** Commits offsets for the group (kafkajs `consumer.commitOffsets`). */
  readonly commit: (offsets: TopicPartitionOffset[]) => Promise<void>;
  readonly log: Logger;
  /** The longest a settled offset waits to be committed, in ms. @default 100 */
  readonly intervalMs?: number;
}

/**
 * Commits a group's offsets, at most every `intervalMs`, one commit at a
 * time: per partition up to its tracker's oldest unsettled offset, and only
 * what changed since the last commit. A failed commit (say, during a
 * rebalance, or while the broker is slow) is tried again on its own, from
 * `intervalMs` doubling to {@link MAX_RETRY_MS}, until one succeeds: what is
 * settled, and where a partition starts, reach the group without waiting
 * for the next settlement.
 */
export class OffsetCommitter {
  #timer: NodeJS.Timeout | undefined;
  #committing: Promise<void> = Promise.resolve();
  #stopped = false;
  /** Commits failed in a row; the next try waits longer. */
  #failures = 0;

  constructor(private readonly o: OffsetCommitterOptions) {}

  /** Commits soon (settlements come in bursts: one commit covers them). */
  schedule(): void {
    if (this.#timer || this.#stopped) return;
    const interval = this.o.intervalMs ?? 100;
    const wait = this.#failures === 0 ? interval : Math.min(interval * 2 ** this.#failures, MAX_RETRY_MS);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.commitNow().catch(() => undefined);
    }, wait);
  }

  /**
   * Commits what changed now, after the commit in flight; rejects when it
   * fails (and schedules another try).
   */
  commitNow(): Promise<void> {
    const done = this.#committing.then(() => this.#commit());
    this.#committing = done.then(
      () => {
        this.#failures = 0;
      },
      (error: unknown) => {
        this.#failures++;
        this.o.log[this.#failures >= 3 ? "warn" : "debug"]({ err: error, failures: this.#failures }, "offset commit failed; trying again");
        this.schedule();
      },
    );
    return done;
  }

  /** Stops scheduling, waits for the commit in flight, then commits what is left (rejects if that fails). */
  async flush(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#committing;
    await this.#commit();
  }

  async #commit(): Promise<void> {
    const offsets: TopicPartitionOffset[] = [];
    const marks: Array<[PartitionTracker, bigint]> = [];
    for (const [partition, tracker] of this.o.trackers) {
      if (!tracker.dirty) continue;
      const offset = tracker.commitOffset()!;
      offsets.push({ topic: this.o.topic, partition, offset: String(offset) });
      marks.push([tracker, offset]);
    }
    if (offsets.length === 0) return;
    await this.o.commit(offsets);
    for (const [tracker, offset] of marks) tracker.committed = offset;
  }
}
