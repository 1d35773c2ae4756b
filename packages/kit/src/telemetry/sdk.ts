/**
 * Starts and stops the OpenTelemetry SDK for one service process.
 *
 * Lifecycle: idle → running → stopping → stopped, or idle → disabled.
 * `register.ts` starts it before the service imports anything; the kit's
 * shutdown calls `shutdownTelemetry()` last. No signal handlers here: the
 * kit's shutdown owns SIGTERM/SIGINT.
 */

import { context, propagation, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { CompositePropagator, W3CBaggagePropagator, W3CTraceContextPropagator } from "@opentelemetry/core";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-grpc";
import { registerInstrumentations } from "@opentelemetry/instrumentation";
import { defaultResource, detectResources, envDetector, hostDetector, processDetector, resourceFromAttributes } from "@opentelemetry/resources";
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  ConsoleSpanExporter,
  ParentBasedSampler,
  TraceIdRatioBasedSampler,
  TracerProvider,
  type Sampler,
  type SpanExporter,
} from "@opentelemetry/sdk-trace";
import { ATTR_SERVICE_INSTANCE_ID, ATTR_SERVICE_NAME } from "@opentelemetry/semantic-conventions";
import { resolveTelemetryConfig, type TelemetryConfig, type TelemetryOptions } from "./config.js";
import { createInstrumentations } from "./instrumentations.js";

/** Where the process-wide telemetry is in its lifecycle. */
export type TelemetryState = "idle" | "disabled" | "running" | "stopping" | "stopped";

interface Running {
  /** Undefined without an exporter: no tracer provider is registered, spans are non-recording, trace context still flows. */
  readonly provider: TracerProvider | undefined;
  readonly processors: readonly BatchSpanProcessor[];
  readonly config: TelemetryConfig;
  readonly onBeforeExit: () => void;
}

let state: TelemetryState = "idle";
let running: Running | undefined;
let stopping: Promise<void> | undefined;
const nothingToStop = Promise.resolve();

/** The current lifecycle state, for health output and tests. */
export function telemetryState(): TelemetryState {
  return state;
}

/**
 * Starts tracing (instrumentations, W3C trace-context + baggage propagation,
 * batched export) once per process and returns the applied configuration;
 * throws if called twice or with an invalid option.
 */
export function startTelemetry(options: TelemetryOptions = {}): TelemetryConfig {
  if (state !== "idle") throw new Error(`startTelemetry: telemetry is already ${state}`);
  const config = resolveTelemetryConfig(options);
  if (!config.enabled) {
    state = "disabled";
    return config;
  }

  const processors = config.exporters.map(
    (name) =>
      new BatchSpanProcessor({
        exporter: createExporter(name, config),
        scheduledDelayMillis: config.batchDelayMs,
        maxQueueSize: config.maxQueueSize,
        maxExportBatchSize: Math.min(config.maxExportBatchSize, config.maxQueueSize),
        exportTimeoutMillis: config.exportTimeoutMs,
      }),
  );
  // What @opentelemetry/sdk-node's NodeSDK wires, for traces only: importing
  // it loaded every metric and log exporter too (a third of a second at each
  // service start).
  registerInstrumentations({ instrumentations: createInstrumentations() });
  const contextManager = new AsyncLocalStorageContextManager();
  contextManager.enable();
  context.setGlobalContextManager(contextManager);
  propagation.setGlobalPropagator(new CompositePropagator({
    propagators: [new W3CTraceContextPropagator(), new W3CBaggagePropagator()],
  }));
  let provider: TracerProvider | undefined;
  if (processors.length > 0) {
    provider = new TracerProvider({
      resource: defaultResource()
        .merge(detectResources({ detectors: [envDetector, processDetector, hostDetector] }))
        .merge(resourceFromAttributes({ [ATTR_SERVICE_INSTANCE_ID]: config.instanceId, [ATTR_SERVICE_NAME]: config.serviceName })),
      sampler: createSampler(config),
      spanProcessors: processors,
    });
    trace.setGlobalTracerProvider(provider);
  }

  // A script that simply runs out of work still exports its last batch.
  const onBeforeExit = (): void => {
    for (const processor of processors) {
      processor.forceFlush().catch((error: unknown) => warn("flush before exit failed", error));
    }
  };
  process.once("beforeExit", onBeforeExit);

  running = { provider, processors, config, onBeforeExit };
  state = "running";
  return config;
}

/**
 * Flushes buffered spans and shuts the SDK down; idempotent (every call gets
 * the same promise), never rejects, and gives up after `shutdownTimeoutMs`
 * with a process warning.
 */
export function shutdownTelemetry(): Promise<void> {
  if (stopping !== undefined) return stopping;
  const current = running;
  if (current === undefined) return nothingToStop;
  state = "stopping";
  process.off("beforeExit", current.onBeforeExit);
  stopping = boundedShutdown(current).finally(() => {
    running = undefined;
    state = "stopped";
  });
  return stopping;
}

async function boundedShutdown({ provider, config }: Running): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<"timeout">((resolve) => {
    timer = setTimeout(resolve, config.shutdownTimeoutMs, "timeout");
  });
  try {
    const outcome = await Promise.race([(provider?.shutdown() ?? Promise.resolve()).then(() => "done" as const), deadline]);
    if (outcome === "timeout") {
      warn(`shutdown did not finish within ${config.shutdownTimeoutMs} ms; unexported spans are lost`);
    }
  } catch (error) {
    warn("shutdown failed; unexported spans are lost", error);
  } finally {
    clearTimeout(timer);
  }
  // Warnings are emitted on the next tick; the caller is about to exit, so
  // let them reach stderr and listeners first.
  await new Promise<void>((resolve) => setImmediate(resolve));
}

function createExporter(name: TelemetryConfig["exporters"][number], config: TelemetryConfig): SpanExporter {
  switch (name) {
    case "otlp":
      return new OTLPTraceExporter({ url: config.otlpEndpoint });
    case "console":
      return new ConsoleSpanExporter();
  }
}

function createSampler(config: TelemetryConfig): Sampler {
  switch (config.sampler) {
    case "always_on":
      return new AlwaysOnSampler();
    case "always_off":
      return new AlwaysOffSampler();
    case "traceidratio":
      return new TraceIdRatioBasedSampler(config.samplerRatio);
    case "parentbased_always_on":
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
    case "parentbased_always_off":
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case "parentbased_traceidratio":
      return new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(config.samplerRatio) });
  }
}

function warn(message: string, cause?: unknown): void {
  const detail = cause === undefined ? "" : `: ${cause instanceof Error ? cause.message : String(cause)}`;
  process.emitWarning(`telemetry ${message}${detail}`, { code: "TASKMESH_TELEMETRY" });
}
