import { randomBytes } from "node:crypto";
import { SpanStatusCode, type Span } from "@opentelemetry/api";
import type { KafkaMessage } from "kafkajs";
import type { Event } from "@taskmesh/contracts/gen/taskmesh/events/v1/events";
import { headersText } from "./cloud-event.js";
import { writeDeadLetter, type Failure } from "./dead-letters.js";
import { startDeliverySpan } from "./delivery-span.js";
import { Room } from "./flow-control.js";
import type { PartitionTracker } from "./partition-tracker.js";
import type { SubscriptionContext } from "./subscription-context.js";

/** One unsettled delivery. */
export interface Pending {
  readonly partition: number;
  readonly offset: bigint;
  readonly message: KafkaMessage;
  readonly event: Event;
  readonly tracker: PartitionTracker;
  /** The current token; absent while waiting to be redelivered (or being dead-lettered). */
  token: string | undefined;
  /** Failed deliveries so far (nacks and expired deadlines). */
  failures: number;
  lastError: string;
  timer: NodeJS.Timeout | undefined;
  span: Span | undefined;
}

/** What `Subscription.settle` did. */
export interface SettleResult {
  readonly acknowledged: number;
  readonly nacked: number;
  readonly invalidTokens: string[];
}

/** A nack as the subscription applies it. */
export interface NackSpec {
  readonly token: string;
  readonly requeue: boolean;
  readonly delayMs: number;
  readonly reason: string;
}

/**
 * A subscription's unsettled deliveries and their bookkeeping: each
 * delivery has a token and an ack deadline; a failed one is redelivered
 * with a new token or dead-lettered; a settled one lets its offset be
 * committed and frees room for the next.
 */
export class Deliveries {
  /** Wakes the consumer waiting for room under `maxInFlight`. */
  readonly room = new Room();
  readonly #ctx: SubscriptionContext;
  readonly #pending = new Map<string, Pending>();
  readonly #tokens = new Map<string, Pending>();
  #tokenCounter = 0;

  constructor(ctx: SubscriptionContext) {
    this.#ctx = ctx;
  }

  /** Unsettled deliveries now. */
  get size(): number {
    return this.#pending.size;
  }

  /** Takes `p` in as unsettled. */
  add(p: Pending): void {
    this.#pending.set(`${p.partition}:${p.offset}`, p);
  }

  /** Applies acks and nacks; tokens unknown, settled, expired or of lost partitions are returned as invalid. */
  settle(ackTokens: readonly string[], nacks: readonly NackSpec[]): SettleResult {
    const invalidTokens: string[] = [];
    let acknowledged = 0;
    let nacked = 0;
    for (const token of ackTokens) {
      const p = this.#tokens.get(token);
      if (!p || !this.#ctx.running()) {
        invalidTokens.push(token);
        continue;
      }
      this.#endDelivery(p);
      p.span?.setStatus({ code: SpanStatusCode.OK });
      p.span?.end();
      this.#done(p);
      acknowledged++;
    }
    for (const nack of nacks) {
      const p = this.#tokens.get(nack.token);
      if (!p || !this.#ctx.running()) {
        invalidTokens.push(nack.token);
        continue;
      }
      this.#fail(p, nack.reason || "nacked", nack.requeue, nack.delayMs);
      nacked++;
    }
    return { acknowledged, nacked, invalidTokens };
  }

  /** Forgets the deliveries of a lost partition: their tokens no longer settle them. */
  drop(tracker: PartitionTracker): void {
    for (const [key, p] of this.#pending) {
      if (p.tracker !== tracker) continue;
      if (p.timer) clearTimeout(p.timer);
      if (p.token) this.#tokens.delete(p.token);
      p.span?.end();
      this.#pending.delete(key);
    }
  }

  /** Ends every delivery as the subscription closes: no token settles any more, none is redelivered. */
  async abandon(): Promise<void> {
    const abandoned: Promise<void>[] = [];
    for (const p of this.#pending.values()) {
      if (p.timer) clearTimeout(p.timer);
      // A delivery the subscriber never settled counts as failed for the member that gets it next.
      if (p.token !== undefined) abandoned.push(this.#ctx.attempts.record(p.partition, p.offset, p.failures + 1));
      p.span?.setStatus({ code: SpanStatusCode.ERROR, message: "subscription ended" });
      p.span?.end();
    }
    await Promise.all(abandoned);
    this.#tokens.clear();
    this.room.free();
  }

  /** Forgets every delivery (the subscription has closed). */
  clear(): void {
    this.#pending.clear();
  }

  /** Sends `p` (again) with a fresh token and starts its ack deadline. */
  deliver(p: Pending): Promise<void> {
    if (!this.#ctx.running() || this.#ctx.trackers.get(p.partition) !== p.tracker) return Promise.resolve();
    const token = `${(++this.#tokenCounter).toString(36)}.${randomBytes(9).toString("base64url")}`;
    p.token = token;
    this.#tokens.set(token, p);
    p.span = startDeliverySpan(this.#ctx.tracer, {
      topic: this.#ctx.spec.topic, partition: p.partition, offset: p.offset, group: this.#ctx.group, subscriptionId: this.#ctx.id,
      eventId: p.event.id, eventType: p.event.type, attempt: p.failures + 1, headers: headersText(p.message.headers),
    });
    p.timer = setTimeout(() => {
      if (p.token === token) this.#fail(p, "ack deadline exceeded", true, 0);
    }, this.#ctx.spec.ackDeadlineMs);
    return this.#ctx.enqueue({
      payload: {
        $case: "delivery",
        value: {
          event: p.event, topic: this.#ctx.spec.topic, partition: p.partition, offset: p.offset,
          key: p.message.key?.toString("utf8") ?? "", publishedAt: new Date(Number(p.message.timestamp)),
          deliveryAttempt: p.failures + 1, ackToken: token,
        },
      },
    });
  }

  /** Stops `p`'s current delivery: its token no longer settles it, its deadline is off. */
  #endDelivery(p: Pending): void {
    if (p.token) this.#tokens.delete(p.token);
    p.token = undefined;
    if (p.timer) clearTimeout(p.timer);
    p.timer = undefined;
  }

  /** A failed delivery: redeliver after `delayMs`, or dead-letter (no requeue, or out of attempts). */
  #fail(p: Pending, reason: string, requeue: boolean, delayMs: number): void {
    this.#endDelivery(p);
    p.failures++;
    p.lastError = reason;
    void this.#ctx.attempts.record(p.partition, p.offset, p.failures);
    p.span?.setStatus({ code: SpanStatusCode.ERROR, message: reason });
    p.span?.end();
    p.span = undefined;
    if (!requeue || p.failures >= this.#ctx.spec.maxDeliveryAttempts) {
      void this.deadLetter(p);
      return;
    }
    p.timer = setTimeout(() => {
      p.timer = undefined;
      void this.deliver(p).catch(() => undefined);
    }, delayMs);
  }

  /** Writes `p` to the dead-letter topic, then settles it; retried every second while Kafka refuses. */
  async deadLetter(p: Pending): Promise<void> {
    const failure: Failure = {
      topic: this.#ctx.spec.topic, partition: p.partition, offset: String(p.offset), group: this.#ctx.group,
      attempts: p.failures, error: p.lastError, message: p.message,
    };
    while (this.#ctx.running() && this.#ctx.trackers.get(p.partition) === p.tracker) {
      try {
        await writeDeadLetter(this.#ctx.kafka, failure);
        this.#ctx.log.info({ topic: failure.topic, partition: p.partition, offset: failure.offset, group: this.#ctx.group, attempts: p.failures, id: p.event.id }, "event dead-lettered");
        this.#done(p);
        return;
      } catch (error) {
        this.#ctx.log.warn({ err: error }, "dead-letter write failed; retrying");
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
  }

  /** `p` is settled: its offset may be committed, and there is room for another delivery. */
  #done(p: Pending): void {
    this.#pending.delete(`${p.partition}:${p.offset}`);
    if (p.failures > 0) this.#ctx.attempts.clear(p.partition, p.offset);
    p.tracker.settle(p.offset);
    this.room.free();
    this.#ctx.committer()?.schedule();
  }
}
