import { context, propagation } from "@opentelemetry/api";
import { Event, type PublishRequest, type PublishResponse } from "@taskmesh/contracts/gen/taskmesh/events/v1/events";
import { Violations } from "@taskmesh/kit";
import { toRecord } from "./cloud-event.js";
import { kafkaUnavailable, type KafkaClients } from "./kafka.js";
import type { Landed, PublishDedup } from "./publish-dedup.js";
import { routeOf } from "./registry.js";
import { checkEvent, contentHash } from "./validation.js";

/** What a {@link Publisher} needs. */
export interface PublisherDeps {
  readonly kafka: KafkaClients;
  readonly dedup: PublishDedup;
  /** The configured type routes (`/events/types`); the built-in ones always apply. */
  readonly routes: () => Readonly<Record<string, string>>;
}

/**
 * Publish: checks the event, routes its type to a topic, and appends it
 * once per (source, id) — see {@link PublishDedup}. The current trace
 * context goes into `traceparent` unless the event carries its own.
 */
export class Publisher {
  constructor(private readonly deps: PublisherDeps) {}

  async publish(request: PublishRequest, signal?: AbortSignal): Promise<PublishResponse> {
    const violations = new Violations();
    const given = request.event;
    const topic = given && given.type !== "" ? routeOf(given.type, this.deps.routes()) : undefined;
    if (given && given.type !== "" && topic === undefined) {
      violations.add("event.type", `${JSON.stringify(given.type)} is not registered (config key /events/types)`, "VAL_UNKNOWN_EVENT_TYPE");
    }
    const event = checkEvent(given, new Date(), violations);
    const hash = contentHash(given!);
    const claim = await this.deps.dedup.claim(event.source, event.id, hash, signal);
    if (claim.kind === "duplicate") return fromLanded(claim.landed, true);
    try {
      const stored = withTraceContext(event);
      const producer = await this.deps.kafka.producer();
      const [meta] = await producer.send({ topic: topic!, acks: -1, messages: [toRecord(stored)] }).catch((error: unknown) => {
        throw kafkaUnavailable(error);
      });
      const landed: Landed = {
        topic: topic!, partition: meta!.partition,
        offset: String(meta!.baseOffset ?? meta!.offset ?? "-1"), event: Event.toJSON(stored),
      };
      await this.deps.dedup.landed(event.source, event.id, hash, landed);
      return fromLanded(landed, false);
    } catch (error) {
      await this.deps.dedup.release(event.source, event.id);
      throw error;
    }
  }
}

/** The event with the active trace context as its `traceparent`/`tracestate` extensions, unless it carries its own. */
function withTraceContext(event: Event): Event {
  if (event.extensions.traceparent) return event;
  const carrier: Record<string, string> = {};
  propagation.inject(context.active(), carrier);
  if (!carrier.traceparent) return event;
  const trace: Record<string, string> = { traceparent: carrier.traceparent };
  if (carrier.tracestate) trace.tracestate = carrier.tracestate;
  return { ...event, extensions: { ...event.extensions, ...trace } };
}

function fromLanded(landed: Landed, duplicate: boolean): PublishResponse {
  return { topic: landed.topic, partition: landed.partition, offset: BigInt(landed.offset), duplicate, event: Event.fromJSON(landed.event) };
}
