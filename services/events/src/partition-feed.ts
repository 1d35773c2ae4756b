import type { EachBatchPayload } from "kafkajs";
import type { SubscribeResponse } from "@taskmesh/contracts/gen/taskmesh/events/v1/events";
import { fromRecord } from "./cloud-event.js";
import type { Deliveries, Pending } from "./deliveries.js";
import { withHeartbeats } from "./flow-control.js";
import { MAX_RETRY_MS } from "./offset-committer.js";
import { PartitionTracker } from "./partition-tracker.js";
import { matchesAny } from "./registry.js";
import { uncommittedEnds } from "./start-offsets.js";
import type { SubscriptionContext } from "./subscription-context.js";

/**
 * The Kafka side of a subscription: follows the group's assignments
 * (positioning each partition it gets at the start position) and turns the
 * records of its batches into deliveries.
 */
export class PartitionFeed {
  readonly #ctx: SubscriptionContext;
  readonly #deliveries: Deliveries;
  readonly #startOffsets = new Map<number, bigint>();
  readonly #seeded = new Set<number>();
  /** Settles once the latest assignment has been positioned and told to the subscriber. */
  #announced: Promise<void> = Promise.resolve();

  constructor(ctx: SubscriptionContext, deliveries: Deliveries) {
    this.#ctx = ctx;
    this.#deliveries = deliveries;
  }

  /** Where partitions start when this member first gets them (from the subscription's start position). */
  startAt(offsets: ReadonlyMap<number, bigint>): void {
    for (const [p, o] of offsets) this.#startOffsets.set(p, o);
  }

  /** A (re)assignment: drops what was lost, keeps what stays, seeks new partitions to the start position, tells the subscriber. */
  assigned(partitions: number[]): void {
    const now = new Set(partitions);
    for (const [partition, tracker] of this.#ctx.trackers) {
      if (now.has(partition)) continue;
      this.#ctx.trackers.delete(partition);
      this.#deliveries.drop(tracker);
    }
    const unpositioned: number[] = [];
    for (const partition of partitions) {
      const kept = this.#ctx.trackers.get(partition);
      if (kept) {
        // A new generation starts from the committed offset: skip straight past what this subscription already took.
        if (kept.highest !== undefined) this.#ctx.consumer()!.seek({ topic: this.#ctx.spec.topic, partition, offset: String(kept.highest + 1n) });
        continue;
      }
      const tracker = new PartitionTracker();
      this.#ctx.trackers.set(partition, tracker);
      if (this.#seeded.has(partition)) continue;
      this.#seeded.add(partition);
      const start = this.#startOffsets.get(partition);
      if (start !== undefined) {
        tracker.startFrom(start);
        this.#ctx.consumer()!.seek({ topic: this.#ctx.spec.topic, partition, offset: String(start) });
        this.#ctx.committer()?.schedule();
      } else if (this.#ctx.spec.start.kind === "committed") {
        unpositioned.push(partition);
      }
    }
    let positioned = Promise.resolve();
    if (unpositioned.length > 0) {
      // Held back until it is known whether the group has an offset for them (kafkajs would start them at the end, unrecorded).
      this.#ctx.consumer()!.pause([{ topic: this.#ctx.spec.topic, partitions: unpositioned }]);
      positioned = this.#positionUncommitted(unpositioned);
    }
    this.#deliveries.room.free();
    // The subscriber hears of its partitions once they are positioned, and before any delivery from them.
    const info: SubscribeResponse = { payload: { $case: "subscription", value: { subscriptionId: this.#ctx.id, consumerGroup: this.#ctx.group, partitions: [...partitions].sort((a, b) => a - b) } } };
    this.#announced = this.#announced.then(() => positioned).then(() => this.#ctx.enqueue(info));
  }

  /**
   * Partitions the group has no committed offset for start at their end
   * now, and that position is committed (named groups) before they are
   * read: a member that gets them after a rebalance continues from there
   * instead of from a later end (which would skip what was published in
   * between). While Kafka refuses the lookup or the commit, they stay
   * paused and it is tried again, from 100 ms doubling to
   * {@link MAX_RETRY_MS}; never left to kafkajs' default, which is a later
   * end again at every rebalance.
   */
  async #positionUncommitted(partitions: number[]): Promise<void> {
    const topic = this.#ctx.spec.topic;
    for (let failures = 0; this.#ctx.running(); failures++) {
      try {
        // Still held by this member and not yet positioned (a rebalance may have taken some meanwhile).
        const unpositioned = partitions.filter((p) => this.#ctx.trackers.get(p)?.highest === undefined);
        if (unpositioned.length > 0) {
          for (const [partition, end] of await uncommittedEnds(this.#ctx.kafka, this.#ctx.group, topic, unpositioned)) {
            const tracker = this.#ctx.trackers.get(partition);
            if (!tracker || tracker.highest !== undefined) continue;
            tracker.startFrom(end);
            this.#ctx.consumer()?.seek({ topic, partition, offset: String(end) });
          }
        }
        await this.#ctx.committer()?.commitNow();
        break;
      } catch (error) {
        this.#ctx.log[failures >= 2 ? "warn" : "debug"]({ err: error, partitions, failures: failures + 1 }, "could not position partitions the group has no offset for; trying again");
        await new Promise((resolve) => setTimeout(resolve, Math.min(100 * 2 ** failures, MAX_RETRY_MS)));
      }
    }
    if (this.#ctx.running()) this.#ctx.consumer()?.resume([{ topic, partitions }]);
  }

  /** One batch of a held partition: each record matching the subscription's types becomes a delivery, as room allows. */
  async eachBatch({ batch, resolveOffset, heartbeat, isRunning, isStale }: EachBatchPayload): Promise<void> {
    await this.#announced;
    const tracker = this.#ctx.trackers.get(batch.partition);
    if (!tracker) return;
    const earlier = await this.#ctx.attempts.load(batch.partition, batch.messages.filter((m) => !tracker.taken(BigInt(m.offset))).map((m) => BigInt(m.offset)));
    for (const message of batch.messages) {
      if (!this.#ctx.running() || !isRunning() || isStale() || this.#ctx.trackers.get(batch.partition) !== tracker) return;
      const offset = BigInt(message.offset);
      if (tracker.taken(offset)) {
        resolveOffset(message.offset);
        continue;
      }
      const event = fromRecord(message);
      if (!matchesAny(this.#ctx.spec.types, event.type)) {
        tracker.take(offset, true);
        resolveOffset(message.offset);
        this.#ctx.committer()?.schedule();
        continue;
      }
      while (this.#deliveries.size >= this.#ctx.spec.maxInFlight) {
        await this.#deliveries.room.wait();
        if (!this.#ctx.running() || !isRunning() || isStale() || this.#ctx.trackers.get(batch.partition) !== tracker) return;
        await heartbeat();
      }
      tracker.take(offset);
      resolveOffset(message.offset);
      const p: Pending = { partition: batch.partition, offset, message, event, tracker, token: undefined, failures: earlier.get(offset) ?? 0, lastError: "", timer: undefined, span: undefined };
      this.#deliveries.add(p);
      if (p.failures >= this.#ctx.spec.maxDeliveryAttempts) {
        // Out of attempts already: its deliveries went to members that ended without settling them.
        p.lastError = "subscription ended before settling";
        void this.#deliveries.deadLetter(p);
        continue;
      }
      await withHeartbeats(this.#deliveries.deliver(p), heartbeat);
    }
  }
}
