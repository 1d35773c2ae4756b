import {
  SpanKind, SpanStatusCode, context, trace, type Tracer,
} from "@opentelemetry/api";
import type { Consumer, EachMessagePayload, IHeaders, KafkaMessage } from "kafkajs";
import type { Logger } from "pino";
import { traceContextOf } from "../trace-context.js";
import type { DedupStore } from "./dedup-store.js";

/** One event as a handler sees it: its CloudEvents attributes and the raw record. */
export interface ConsumedEvent {
  /** `ce_id`; for a record without one, its position (`topic/partition@offset`). */
  readonly id: string;
  readonly type: string;
  readonly source: string;
  readonly subject: string;
  readonly topic: string;
  readonly partition: number;
  readonly offset: string;
  /** The record's headers as text. */
  readonly headers: Readonly<Record<string, string>>;
  readonly key: Buffer | null;
  readonly value: Buffer | null;
}

/** Handles one event; throw to have it redelivered (nothing is committed, the id is not marked done). */
export type EventHandler = (event: ConsumedEvent, signal: AbortSignal) => Promise<void>;

/** The part of a kafkajs consumer the helper uses (a fake in unit tests). */
export type ConsumerLike = Pick<Consumer, "connect" | "subscribe" | "run" | "commitOffsets" | "disconnect">;

/** The helper's lifecycle. */
export type EventConsumerState = "idle" | "running" | "stopping" | "stopped";

/** Options of an {@link EventConsumer}; durations in ms. */
export interface EventConsumerOptions {
  /** A kafkajs consumer of the group (made with `kafka.consumer({ groupId })`), not yet connected. */
  readonly consumer: ConsumerLike;
  /** The group id: it namespaces the dedup keys, so each group sees each event once. */
  readonly groupId: string;
  readonly topics: readonly string[];
  readonly handler: EventHandler;
  /** Where processed ids are remembered (a {@link RedisDedupStore} across replicas). */
  readonly store: DedupStore;
  readonly logger: Logger;
  /** Start a new group at the oldest retained record instead of the newest. @default false */
  readonly fromBeginning?: boolean;
  /** How long a processed id is remembered. @default 24h */
  readonly dedupTtlMs?: number;
  /** How long a claim holds while the handler runs (longer handlers may be run twice). @default 60s */
  readonly leaseMs?: number;
  /** Dedup key prefix. @default taskmesh:consumed: */
  readonly keyPrefix?: string;
  /** @default the `taskmesh-events` tracer of the global provider */
  readonly tracer?: Tracer;
}

/** A claim held by another consumer: the record is retried later, never skipped. */
export class EventBusyError extends Error {
  override readonly name = "EventBusyError";
}

function text(headers: IHeaders | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers ?? {})) {
    const first = Array.isArray(v) ? v[0] : v;
    if (first !== undefined) out[k] = Buffer.isBuffer(first) ? first.toString("utf8") : String(first);
  }
  return out;
}

/** The event a record carries, for a handler. */
export function consumedEvent(topic: string, partition: number, message: KafkaMessage): ConsumedEvent {
  const headers = text(message.headers);
  return {
    id: headers.ce_id || `${topic}/${partition}@${message.offset}`,
    type: headers.ce_type ?? "", source: headers.ce_source ?? "", subject: headers.ce_subject ?? "",
    topic, partition, offset: message.offset, headers, key: message.key, value: message.value,
  };
}

/**
 * Consumes topics as one consumer-group member so that the handler sees
 * each event once by event id, although Kafka delivers at least once
 * (a relay re-send, a rebalance, a crash before a commit):
 *
 * 1. claim the id in the dedup store (`SET NX` with a lease);
 *    an id already done is skipped (and committed), one being processed
 *    elsewhere is retried later;
 * 2. run the handler inside a CONSUMER span that is a child of the record's
 *    `traceparent`;
 * 3. on success mark the id done (kept for `dedupTtlMs`), then commit the
 *    offset after the record; on failure release the claim and throw, so
 *    kafkajs redelivers the record (nothing is committed).
 */
export class EventConsumer {
  #state: EventConsumerState = "idle";
  readonly #o: EventConsumerOptions;
  readonly #tracer: Tracer;
  readonly #stop = new AbortController();
  #processed = 0;
  #skipped = 0;

  constructor(options: EventConsumerOptions) {
    this.#o = options;
    this.#tracer = options.tracer ?? trace.getTracer("taskmesh-events");
  }

  get state(): EventConsumerState {
    return this.#state;
  }

  /** Events the handler processed, and duplicates skipped, by this instance, each counted once its offset is committed. */
  get counts(): { readonly processed: number; readonly skipped: number } {
    return { processed: this.#processed, skipped: this.#skipped };
  }

  /** Connects, subscribes and starts consuming. */
  async start(): Promise<void> {
    if (this.#state !== "idle") throw new Error(`event consumer is ${this.#state}`);
    this.#state = "running";
    const { consumer } = this.#o;
    await consumer.connect();
    for (const topic of this.#o.topics) await consumer.subscribe({ topic, fromBeginning: this.#o.fromBeginning ?? false });
    await consumer.run({ autoCommit: false, eachMessage: (payload) => this.handle(payload) });
  }

  /** Stops consuming: the handler in flight is signalled, the group is left. */
  async stop(): Promise<void> {
    if (this.#state === "stopped" || this.#state === "stopping") return;
    const wasRunning = this.#state === "running";
    this.#state = "stopping";
    this.#stop.abort(new Error("the event consumer is stopping"));
    if (wasRunning) await this.#o.consumer.disconnect();
    this.#state = "stopped";
  }

  /** Processes one record (kafkajs' `eachMessage`; public for tests with a fake consumer). */
  async handle({ topic, partition, message }: Pick<EachMessagePayload, "topic" | "partition" | "message">): Promise<void> {
    const event = consumedEvent(topic, partition, message);
    const key = `${this.#o.keyPrefix ?? "taskmesh:consumed:"}${this.#o.groupId}:${event.id}`;
    const parent = traceContextOf(event.headers);
    const span = this.#tracer.startSpan(`${topic} process`, {
      kind: SpanKind.CONSUMER,
      attributes: {
        "messaging.system": "kafka", "messaging.operation.type": "process", "messaging.destination.name": topic,
        "messaging.destination.partition.id": String(partition), "messaging.kafka.offset": Number(message.offset),
        "messaging.consumer.group.name": this.#o.groupId, "messaging.message.id": event.id, "cloudevents.event_type": event.type,
      },
    }, parent);
    try {
      const claim = await this.#o.store.claim(key, this.#o.leaseMs ?? 60_000);
      span.setAttribute("taskmesh.dedup", claim);
      if (claim === "busy") throw new EventBusyError(`event ${event.id} is being processed by another consumer`);
      if (claim === "claimed") {
        try {
          await context.with(trace.setSpan(parent, span), () => this.#o.handler(event, this.#stop.signal));
        } catch (error) {
          await this.#o.store.release(key).catch(() => undefined);
          throw error;
        }
        await this.#o.store.complete(key, this.#o.dedupTtlMs ?? 24 * 3_600_000);
      } else {
        this.#o.logger.debug({ id: event.id, topic, partition, offset: message.offset }, "duplicate event skipped");
      }
      await this.#o.consumer.commitOffsets([{ topic, partition, offset: (BigInt(message.offset) + 1n).toString() }]);
      // Counted once committed: a record whose commit failed comes again and is counted then.
      if (claim === "claimed") this.#processed++;
      else this.#skipped++;
      span.setStatus({ code: SpanStatusCode.OK });
    } catch (error) {
      span.recordException(error as Error);
      span.setStatus({ code: SpanStatusCode.ERROR, message: (error as Error).message });
      throw error;
    } finally {
      span.end();
    }
  }
}
