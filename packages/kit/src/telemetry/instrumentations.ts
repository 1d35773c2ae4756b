/**
 * The instrumentations every taskmesh service runs, with the kit's settings.
 */

import type { InstrumentationBase } from "@opentelemetry/instrumentation";
import { GrpcInstrumentation } from "@opentelemetry/instrumentation-grpc";
import { IORedisInstrumentation } from "@opentelemetry/instrumentation-ioredis";
import { KafkaJsInstrumentation } from "@opentelemetry/instrumentation-kafkajs";
import { PgInstrumentation } from "@opentelemetry/instrumentation-pg";
import { PinoInstrumentation } from "@opentelemetry/instrumentation-pino";

/**
 * Builds (and thereby enables) the gRPC, Postgres, Redis, Kafka and pino
 * instrumentations; call once, before those packages are imported.
 */
export function createInstrumentations(): InstrumentationBase[] {
  return [
    new GrpcInstrumentation(),
    // Pool connects and health probes outside a request are noise.
    new PgInstrumentation({ requireParentSpan: true }),
    new IORedisInstrumentation(),
    new KafkaJsInstrumentation(),
    // Logs go to stdout as JSON (see log.ts); no OTel logs pipeline is
    // configured, so only correlate, never ship.
    new PinoInstrumentation({ disableLogSending: true }),
  ];
}
