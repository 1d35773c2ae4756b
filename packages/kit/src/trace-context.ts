import { ROOT_CONTEXT, defaultTextMapGetter, type Context } from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";

const w3c = new W3CTraceContextPropagator();

/**
 * The trace context named by W3C `traceparent` (and `tracestate`) values —
 * a task row's, an assignment's, a Kafka record's headers — for starting a
 * span in that trace; the root context when there is none. Read with the
 * W3C propagator itself, not the global one, so it holds whatever
 * propagators the process configured.
 */
export function traceContextOf(carrier: Readonly<Record<string, string | undefined>>): Context {
  return w3c.extract(ROOT_CONTEXT, carrier, defaultTextMapGetter);
}
