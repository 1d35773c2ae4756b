/**
 * The kit's structured logger: pino writing one JSON object per line, with
 * the service identity, a level label, ISO time, the active span's trace
 * ids (for jumping from a log line to its trace) and secrets redacted.
 */

import { context, isSpanContextValid, trace } from "@opentelemetry/api";
import { hostname } from "node:os";
import { pino, stdTimeFunctions, type DestinationStream, type LevelWithSilent, type Logger as PinoLogger } from "pino";

/** The logger every service and kit module writes to. */
export type Logger = PinoLogger;

/** A level name; `silent` turns logging off. */
export type LogLevel = LevelWithSilent;

/** Options for `createLogger`; every field is optional. */
export interface LoggerOptions {
  /**
   * Written as `service` on every line.
   * @default "unknown"
   */
  service?: string;
  /**
   * Written as `instance` on every line; pass the same value telemetry uses
   * (TASKMESH_INSTANCE) so logs and spans name the process alike.
   * @default "<hostname>:<pid>"
   */
  instance?: string;
  /**
   * Lowest level written; the caller usually reads it from its config.
   * @default "info"
   */
  level?: LogLevel;
  /**
   * Where lines go.
   * @default standard output, written synchronously
   */
  destination?: DestinationStream;
  /**
   * Extra pino redaction paths, on top of REDACTED_PATHS.
   * @default []
   */
  redact?: readonly string[];
}

/** Field names whose values never reach the log, at the top level or one object down. */
export const REDACTED_KEYS: readonly string[] = Object.freeze([
  "authorization",
  "password",
  "secret",
  "token",
  "apiKey",
  "refreshToken",
]);

/** The pino paths built from REDACTED_KEYS (e.g. `password`, `*.password`). */
export const REDACTED_PATHS: readonly string[] = Object.freeze(
  REDACTED_KEYS.flatMap((key) => [key, `*.${key}`]),
);

/** Creates a JSON-lines logger; see LoggerOptions for the defaults. */
export function createLogger(options: LoggerOptions = {}): Logger {
  const logger = pino(
    {
      level: options.level ?? "info",
      base: {
        service: options.service ?? "unknown",
        instance: options.instance ?? `${hostname()}:${process.pid}`,
      },
      timestamp: stdTimeFunctions.isoTime,
      formatters: {
        level: (label) => ({ level: label }),
      },
      mixin: traceFields,
      serializers: { err: serializeError },
      redact: {
        paths: [...REDACTED_PATHS, ...(options.redact ?? [])],
        censor: "[redacted]",
      },
    },
    options.destination,
  );
  return logger;
}

/** Fields of an error worth a log line; never the whole object (a pg error holds its client, with credentials). */
const ERROR_FIELDS = ["code", "reason", "severity", "detail", "routine", "syscall", "address", "port"] as const;

/**
 * Logs an error as its type, message, stack, a few well-known diagnostic
 * fields and, one level deep, its cause — and nothing else it may carry.
 */
export function serializeError(error: unknown): Record<string, unknown> {
  if (!(error instanceof Error)) return { message: String(error) };
  const out: Record<string, unknown> = { type: error.name, message: error.message, stack: error.stack };
  for (const field of ERROR_FIELDS) {
    const value = (error as unknown as Record<string, unknown>)[field];
    if (typeof value === "string" || typeof value === "number") out[field] = value;
  }
  if (error.cause !== undefined) {
    out.cause = error.cause instanceof Error ? { type: error.cause.name, message: error.cause.message } : String(error.cause);
  }
  return out;
}

/**
 * trace_id/span_id/trace_flags of the active span, in the field names the
 * pino instrumentation uses, so lines look the same with or without it.
 */
function traceFields(): Record<string, string> {
  const span = trace.getSpan(context.active());
  if (span === undefined) return {};
  const spanContext = span.spanContext();
  if (!isSpanContextValid(spanContext)) return {};
  return {
    trace_id: spanContext.traceId,
    span_id: spanContext.spanId,
    trace_flags: `0${spanContext.traceFlags.toString(16)}`,
  };
}
