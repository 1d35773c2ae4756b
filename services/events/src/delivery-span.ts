import { SpanKind, trace, type Link, type Span, type Tracer } from "@opentelemetry/api";
import { traceContextOf } from "@taskmesh/kit/trace-context";

/** What a delivery span describes. */
export interface DeliveryFacts {
  readonly topic: string;
  readonly partition: number;
  readonly offset: bigint;
  readonly group: string;
  readonly subscriptionId: string;
  readonly eventId: string;
  readonly eventType: string;
  readonly attempt: number;
  /** The record's headers, whose `traceparent` the span links to. */
  readonly headers: Readonly<Record<string, string>>;
}

/**
 * A CONSUMER span for one delivery, linked to the record's `traceparent`
 * (a link, not a parent: the subscriber settles it on its own schedule).
 * The caller ends it when the delivery is settled or fails.
 */
export function startDeliverySpan(tracer: Tracer, f: DeliveryFacts): Span {
  const parent = trace.getSpanContext(traceContextOf(f.headers));
  const links: Link[] = parent ? [{ context: parent }] : [];
  return tracer.startSpan(`${f.topic} deliver`, {
    kind: SpanKind.CONSUMER,
    links,
    attributes: {
      "messaging.system": "kafka",
      "messaging.operation.type": "process",
      "messaging.destination.name": f.topic,
      "messaging.destination.partition.id": String(f.partition),
      "messaging.kafka.offset": Number(f.offset),
      "messaging.consumer.group.name": f.group,
      "messaging.message.id": f.eventId,
      "cloudevents.event_type": f.eventType,
      "taskmesh.delivery_attempt": f.attempt,
      "taskmesh.subscription_id": f.subscriptionId,
    },
  });
}
