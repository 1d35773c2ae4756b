import { randomBytes } from "node:crypto";
import { SpanStatusCode, type Span, type Tracer } from "@opentelemetry/api";
import type { Consumer, EachBatchPayload, KafkaMessage } from "kafkajs";
import type { Event, SubscribeResponse } from "../../../gen/taskmesh/events/v1/events.js";
import { notFound, type Logger } from "../../kit/src/index.js";
import { fromRecord, headersText } from "./cloud-event.js";
import { GroupAttempts, type AttemptStore } from "./attempts.js";
import { writeDeadLetter, type Failure } from "./dead-letters.js";
import { kafkaUnavailable, type KafkaClients } from "./kafka.js";
import { startDeliverySpan } from "./delivery-span.js";
import { Room, withHeartbeats } from "./flow-control.js";
import { OffsetCommitter } from "./offset-committer.js";
import { PartitionTracker } from "./partition-tracker.js";
import { matchesAny } from "./registry.js";
import { resolveStartOffsets, uncommittedEnds } from "./start-offsets.js";
import type { SubscriptionSpec } from "./validation.js";

/** A subscription's lifecycle. */
export type SubscriptionState = "starting" | "running" | "closing" | "closed";

/** One unsettled delivery. */
interface Pending {
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

/** What {@link Subscription.settle} did. */
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

/** Options of a {@link Subscription}. */
export interface SubscriptionOptions {
  readonly id: string;
  readonly spec: SubscriptionSpec;
  readonly kafka: KafkaClients;
  /** Sends one message on the Subscribe stream; rejects once the stream is gone. */
  readonly send: (message: SubscribeResponse) => Promise<void>;
  readonly log: Logger;
  readonly tracer: Tracer;
  /** Called once when the subscription fails on its own (consumer crash, stream gone); the handler ends the call with it. */
  readonly onFailure: (error: unknown) => void;
  /** Keeps failed-delivery counts across reconnects (named groups only). @default counts live in the subscription */
  readonly attempts?: AttemptStore;
  /** How often settled offsets are committed, at most. @default 100 ms */
  readonly commitIntervalMs?: number;
}

/** The generated group id of a private subscription. */
export function privateGroup(id: string): string {
  return `taskmesh-events-private.${id}`;
}

/**
 * One Subscribe stream: a kafkajs consumer in the subscription's group
 * (so N subscribers of a group share the partitions), delivering each
 * record at least once with explicit settlement.
 *
 * - Up to `maxInFlight` deliveries are unsettled at a time; the consumer
 *   waits (heartbeating) for room.
 * - A delivery not settled within the ack deadline, or nacked with requeue,
 *   is a failed delivery: it is redelivered (after the nack's delay) with a
 *   new token, until `maxDeliveryAttempts` failures send it to
 *   `taskmesh.dlq`; a nack without requeue sends it there at once.
 * - Per partition, the group's offset is committed only up to the oldest
 *   unsettled delivery (private groups commit nothing). When the stream
 *   ends, what is unsettled is not committed, so the group gets it again.
 * - Each delivery has a CONSUMER span linked to the record's `traceparent`,
 *   ended when the delivery is settled or fails.
 */
export class Subscription {
  readonly id: string;
  readonly group: string;
  #state: SubscriptionState = "starting";
  readonly #o: SubscriptionOptions;
  readonly #spec: SubscriptionSpec;
  readonly #trackers = new Map<number, PartitionTracker>();
  readonly #pending = new Map<string, Pending>();
  readonly #tokens = new Map<string, Pending>();
  readonly #startOffsets = new Map<number, bigint>();
  readonly #seeded = new Set<number>();
  #consumer: Consumer | undefined;
  #sending: Promise<void> = Promise.resolve();
  readonly #room = new Room();
  /** Settles once the latest assignment has been positioned and told to the subscriber. */
  #announced: Promise<void> = Promise.resolve();
  /** Commits the group's settled offsets; none for a private group. */
  #committer: OffsetCommitter | undefined;
  #tokenCounter = 0;
  readonly #attempts: GroupAttempts;

  constructor(options: SubscriptionOptions) {
    this.#o = options;
    this.#spec = options.spec;
    this.id = options.id;
    this.group = options.spec.group ?? privateGroup(options.id);
    this.#attempts = new GroupAttempts(options.attempts, this.group, options.spec.topic, options.spec.group !== undefined);
  }

  get state(): SubscriptionState {
    return this.#state;
  }

  /** The topic it reads. */
  get topic(): string {
    return this.#spec.topic;
  }

  /** Whether it belongs to a named group (which commits offsets), not a private one. */
  get shared(): boolean {
    return this.#spec.group !== undefined;
  }

  /** Unsettled deliveries now. */
  get inFlight(): number {
    return this.#pending.size;
  }

  /**
   * Checks the topic and start position, then joins the group; the first
   * stream message (the subscription and its partitions) follows the join.
   * NOT_FOUND for a missing topic, INVALID_ARGUMENT for offsets of unknown
   * partitions, UNAVAILABLE when Kafka cannot be reached.
   */
  async start(): Promise<void> {
    if (this.#state !== "starting") throw new Error(`subscription is ${this.#state}`);
    const { topic, start } = this.#spec;
    const partitions = await this.#o.kafka.partitionsOf(topic);
    if (partitions === undefined) throw notFound("RES_TOPIC_NOT_FOUND", `topic ${topic} does not exist`, { topic });
    for (const [p, o] of await resolveStartOffsets(this.#o.kafka, topic, start, partitions)) this.#startOffsets.set(p, o);
    const consumer = this.#o.kafka.kafka.consumer({
      groupId: this.group, allowAutoTopicCreation: false, maxWaitTimeInMs: 100,
      sessionTimeout: 10_000, rebalanceTimeout: 10_000, heartbeatInterval: 1000,
      retry: { retries: 5, initialRetryTime: 100, maxRetryTime: 2000 },
    });
    this.#consumer = consumer;
    if (this.#spec.group !== undefined) {
      this.#committer = new OffsetCommitter({
        topic, trackers: this.#trackers, commit: (offsets) => consumer.commitOffsets(offsets), log: this.#o.log,
        ...(this.#o.commitIntervalMs === undefined ? {} : { intervalMs: this.#o.commitIntervalMs }),
      });
    }
    consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => this.#assigned(payload.memberAssignment[topic] ?? []));
    consumer.on(consumer.events.CRASH, ({ payload }) => {
      if (!payload.restart && this.#state === "running") this.#o.onFailure(kafkaUnavailable(payload.error));
    });
    try {
      await consumer.connect();
      await consumer.subscribe({ topic, fromBeginning: false });
      this.#state = "running";
      await consumer.run({ autoCommit: false, eachBatchAutoResolve: false, eachBatch: (payload) => this.#eachBatch(payload) });
    } catch (error) {
      await consumer.disconnect().catch(() => undefined);
      throw kafkaUnavailable(error);
    }
  }

  /** Applies acks and nacks; tokens unknown, settled, expired or of lost partitions are returned as invalid. */
  settle(ackTokens: readonly string[], nacks: readonly NackSpec[]): SettleResult {
    const invalidTokens: string[] = [];
    let acknowledged = 0;
    let nacked = 0;
    for (const token of ackTokens) {
      const p = this.#tokens.get(token);
      if (!p || this.#state !== "running") {
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
      if (!p || this.#state !== "running") {
        invalidTokens.push(nack.token);
        continue;
      }
      this.#fail(p, nack.reason || "nacked", nack.requeue, nack.delayMs);
      nacked++;
    }
    return { acknowledged, nacked, invalidTokens };
  }

  /**
   * Ends the subscription: commits what is settled, leaves the group (its
   * partitions, with the unsettled deliveries, go to the other members).
   */
  async close(): Promise<void> {
    if (this.#state === "closing" || this.#state === "closed") return;
    this.#state = "closing";
    const abandoned: Promise<void>[] = [];
    for (const p of this.#pending.values()) {
      if (p.timer) clearTimeout(p.timer);
      // A delivery the subscriber never settled counts as failed for the member that gets it next.
      if (p.token !== undefined) abandoned.push(this.#attempts.record(p.partition, p.offset, p.failures + 1));
      p.span?.setStatus({ code: SpanStatusCode.ERROR, message: "subscription ended" });
      p.span?.end();
    }
    await Promise.all(abandoned);
    this.#tokens.clear();
    this.#room.free();
    await this.#committer?.flush().catch((error: unknown) => this.#o.log.debug({ err: error }, "final offset commit failed; the group gets those events again"));
    await this.#consumer?.disconnect().catch((error: unknown) => this.#o.log.debug({ err: error }, "subscription consumer disconnect failed"));
    this.#pending.clear();
    this.#state = "closed";
  }

  /** A (re)assignment: drops what was lost, keeps what stays, seeks new partitions to the start position, tells the subscriber. */
  #assigned(partitions: number[]): void {
    const now = new Set(partitions);
    for (const [partition, tracker] of this.#trackers) {
      if (now.has(partition)) continue;
      this.#trackers.delete(partition);
      for (const [key, p] of this.#pending) {
        if (p.tracker !== tracker) continue;
        if (p.timer) clearTimeout(p.timer);
        if (p.token) this.#tokens.delete(p.token);
        p.span?.end();
        this.#pending.delete(key);
      }
    }
    const unpositioned: number[] = [];
    for (const partition of partitions) {
      const kept = this.#trackers.get(partition);
      if (kept) {
        // A new generation starts from the committed offset: skip straight past what this subscription already took.
        if (kept.highest !== undefined) this.#consumer!.seek({ topic: this.#spec.topic, partition, offset: String(kept.highest + 1n) });
        continue;
      }
      const tracker = new PartitionTracker();
      this.#trackers.set(partition, tracker);
      if (this.#seeded.has(partition)) continue;
      this.#seeded.add(partition);
      const start = this.#startOffsets.get(partition);
      if (start !== undefined) {
        tracker.startFrom(start);
        this.#consumer!.seek({ topic: this.#spec.topic, partition, offset: String(start) });
        this.#committer?.schedule();
      } else if (this.#spec.start.kind === "committed") {
        unpositioned.push(partition);
      }
    }
    let positioned = Promise.resolve();
    if (unpositioned.length > 0) {
      // Held back until it is known whether the group has an offset for them (kafkajs would start them at the end, unrecorded).
      this.#consumer!.pause([{ topic: this.#spec.topic, partitions: unpositioned }]);
      positioned = this.#positionUncommitted(unpositioned);
    }
    this.#room.free();
    // The subscriber hears of its partitions once they are positioned, and before any delivery from them.
    const info: SubscribeResponse = { payload: { $case: "subscription", value: { subscriptionId: this.id, consumerGroup: this.group, partitions: [...partitions].sort((a, b) => a - b) } } };
    this.#announced = this.#announced.then(() => positioned).then(() => this.#enqueue(info));
  }

  /**
   * Partitions the group has no committed offset for start at their end
   * now, and that position is committed at once (named groups): a member
   * that gets them after a rebalance continues from there instead of from
   * a later end (which would skip what was published in between).
   */
  async #positionUncommitted(partitions: number[]): Promise<void> {
    const topic = this.#spec.topic;
    try {
      for (const [partition, end] of await uncommittedEnds(this.#o.kafka, this.group, topic, partitions)) {
        const tracker = this.#trackers.get(partition);
        if (!tracker || tracker.highest !== undefined) continue;
        tracker.startFrom(end);
        this.#consumer?.seek({ topic, partition, offset: String(end) });
      }
      this.#committer?.schedule();
    } catch (error) {
      this.#o.log.warn({ err: error }, "could not look up the group's offsets; starting those partitions at kafkajs' default");
    } finally {
      if (this.#state === "running") this.#consumer?.resume([{ topic, partitions }]);
    }
  }

  async #eachBatch({ batch, resolveOffset, heartbeat, isRunning, isStale }: EachBatchPayload): Promise<void> {
    await this.#announced;
    const tracker = this.#trackers.get(batch.partition);
    if (!tracker) return;
    const earlier = await this.#attempts.load(batch.partition, batch.messages.filter((m) => !tracker.taken(BigInt(m.offset))).map((m) => BigInt(m.offset)));
    for (const message of batch.messages) {
      if (this.#state !== "running" || !isRunning() || isStale() || this.#trackers.get(batch.partition) !== tracker) return;
      const offset = BigInt(message.offset);
      if (tracker.taken(offset)) {
        resolveOffset(message.offset);
        continue;
      }
      const event = fromRecord(message);
      if (!matchesAny(this.#spec.types, event.type)) {
        tracker.take(offset, true);
        resolveOffset(message.offset);
        this.#committer?.schedule();
        continue;
      }
      while (this.#pending.size >= this.#spec.maxInFlight) {
        await this.#room.wait();
        if (this.#state !== "running" || !isRunning() || isStale() || this.#trackers.get(batch.partition) !== tracker) return;
        await heartbeat();
      }
      tracker.take(offset);
      resolveOffset(message.offset);
      const p: Pending = { partition: batch.partition, offset, message, event, tracker, token: undefined, failures: earlier.get(offset) ?? 0, lastError: "", timer: undefined, span: undefined };
      this.#pending.set(`${batch.partition}:${offset}`, p);
      if (p.failures >= this.#spec.maxDeliveryAttempts) {
        // Out of attempts already: its deliveries went to members that ended without settling them.
        p.lastError = "subscription ended before settling";
        void this.#deadLetter(p);
        continue;
      }
      await withHeartbeats(this.#deliver(p), heartbeat);
    }
  }

  /** Sends `p` (again) with a fresh token and starts its ack deadline. */
  #deliver(p: Pending): Promise<void> {
    if (this.#state !== "running" || this.#trackers.get(p.partition) !== p.tracker) return Promise.resolve();
    const token = `${(++this.#tokenCounter).toString(36)}.${randomBytes(9).toString("base64url")}`;
    p.token = token;
    this.#tokens.set(token, p);
    p.span = startDeliverySpan(this.#o.tracer, {
      topic: this.#spec.topic, partition: p.partition, offset: p.offset, group: this.group, subscriptionId: this.id,
      eventId: p.event.id, eventType: p.event.type, attempt: p.failures + 1, headers: headersText(p.message.headers),
    });
    p.timer = setTimeout(() => {
      if (p.token === token) this.#fail(p, "ack deadline exceeded", true, 0);
    }, this.#spec.ackDeadlineMs);
    return this.#enqueue({
      payload: {
        $case: "delivery",
        value: {
          event: p.event, topic: this.#spec.topic, partition: p.partition, offset: p.offset,
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
    void this.#attempts.record(p.partition, p.offset, p.failures);
    p.span?.setStatus({ code: SpanStatusCode.ERROR, message: reason });
    p.span?.end();
    p.span = undefined;
    if (!requeue || p.failures >= this.#spec.maxDeliveryAttempts) {
      void this.#deadLetter(p);
      return;
    }
    p.timer = setTimeout(() => {
      p.timer = undefined;
      void this.#deliver(p).catch(() => undefined);
    }, delayMs);
  }

  /** Writes `p` to the dead-letter topic, then settles it; retried every second while Kafka refuses. */
  async #deadLetter(p: Pending): Promise<void> {
    const failure: Failure = {
      topic: this.#spec.topic, partition: p.partition, offset: String(p.offset), group: this.group,
      attempts: p.failures, error: p.lastError, message: p.message,
    };
    while (this.#state === "running" && this.#trackers.get(p.partition) === p.tracker) {
      try {
        await writeDeadLetter(this.#o.kafka, failure);
        this.#o.log.info({ topic: failure.topic, partition: p.partition, offset: failure.offset, group: this.group, attempts: p.failures, id: p.event.id }, "event dead-lettered");
        this.#done(p);
        return;
      } catch (error) {
        this.#o.log.warn({ err: error }, "dead-letter write failed; retrying");
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
  }

  /** `p` is settled: its offset may be committed, and there is room for another delivery. */
  #done(p: Pending): void {
    this.#pending.delete(`${p.partition}:${p.offset}`);
    if (p.failures > 0) this.#attempts.clear(p.partition, p.offset);
    p.tracker.settle(p.offset);
    this.#room.free();
    this.#committer?.schedule();
  }

  #enqueue(message: SubscribeResponse): Promise<void> {
    const sent = this.#sending.then(() => this.#o.send(message));
    this.#sending = sent.catch((error: unknown) => {
      if (this.#state === "running") this.#o.onFailure(error);
    });
    return this.#sending;
  }
}
