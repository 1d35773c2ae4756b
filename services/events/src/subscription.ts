import type { Tracer } from "@opentelemetry/api";
import type { Consumer } from "kafkajs";
import type { SubscribeResponse } from "@taskmesh/contracts/gen/taskmesh/events/v1/events";
import { notFound, type Logger } from "@taskmesh/kit";
import { GroupAttempts, type AttemptStore } from "./attempts.js";
import { Deliveries, type NackSpec, type SettleResult } from "./deliveries.js";
import { kafkaUnavailable, type KafkaClients } from "./kafka.js";
import { OffsetCommitter } from "./offset-committer.js";
import { PartitionFeed } from "./partition-feed.js";
import type { PartitionTracker } from "./partition-tracker.js";
import { resolveStartOffsets } from "./start-offsets.js";
import type { SubscriptionContext } from "./subscription-context.js";
import type { SubscriptionSpec } from "./validation.js";

/** A subscription's lifecycle. */
export type SubscriptionState = "starting" | "running" | "closing" | "closed";

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
  #consumer: Consumer | undefined;
  #sending: Promise<void> = Promise.resolve();
  /** Commits the group's settled offsets; none for a private group. */
  #committer: OffsetCommitter | undefined;
  readonly #deliveries: Deliveries;
  readonly #feed: PartitionFeed;

  constructor(options: SubscriptionOptions) {
    this.#o = options;
    this.#spec = options.spec;
    this.id = options.id;
    this.group = options.spec.group ?? privateGroup(options.id);
    const ctx: SubscriptionContext = {
      id: this.id, group: this.group, spec: options.spec, kafka: options.kafka, log: options.log, tracer: options.tracer,
      attempts: new GroupAttempts(options.attempts, this.group, options.spec.topic, options.spec.group !== undefined),
      trackers: this.#trackers,
      running: () => this.#state === "running",
      consumer: () => this.#consumer,
      committer: () => this.#committer,
      enqueue: (message) => this.#enqueue(message),
    };
    this.#deliveries = new Deliveries(ctx);
    this.#feed = new PartitionFeed(ctx, this.#deliveries);
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
    return this.#deliveries.size;
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
    this.#feed.startAt(await resolveStartOffsets(this.#o.kafka, topic, start, partitions));
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
    consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => this.#feed.assigned(payload.memberAssignment[topic] ?? []));
    consumer.on(consumer.events.CRASH, ({ payload }) => {
      if (!payload.restart && this.#state === "running") this.#o.onFailure(kafkaUnavailable(payload.error));
    });
    try {
      await consumer.connect();
      await consumer.subscribe({ topic, fromBeginning: false });
      this.#state = "running";
      await consumer.run({ autoCommit: false, eachBatchAutoResolve: false, eachBatch: (payload) => this.#feed.eachBatch(payload) });
    } catch (error) {
      await consumer.disconnect().catch(() => undefined);
      throw kafkaUnavailable(error);
    }
  }

  /** Applies acks and nacks; tokens unknown, settled, expired or of lost partitions are returned as invalid. */
  settle(ackTokens: readonly string[], nacks: readonly NackSpec[]): SettleResult {
    return this.#deliveries.settle(ackTokens, nacks);
  }

  /**
   * Ends the subscription: commits what is settled, leaves the group (its
   * partitions, with the unsettled deliveries, go to the other members).
   */
  async close(): Promise<void> {
    if (this.#state === "closing" || this.#state === "closed") return;
    this.#state = "closing";
    await this.#deliveries.abandon();
    await this.#committer?.flush().catch((error: unknown) => this.#o.log.debug({ err: error }, "final offset commit failed; the group gets those events again"));
    await this.#consumer?.disconnect().catch((error: unknown) => this.#o.log.debug({ err: error }, "subscription consumer disconnect failed"));
    this.#deliveries.clear();
    this.#state = "closed";
  }

  /** Sends one message on the Subscribe stream, after those sent before it; a failed send while running fails the subscription. */
  #enqueue(message: SubscribeResponse): Promise<void> {
    const sent = this.#sending.then(() => this.#o.send(message));
    this.#sending = sent.catch((error: unknown) => {
      if (this.#state === "running") this.#o.onFailure(error);
    });
    return this.#sending;
  }
}
