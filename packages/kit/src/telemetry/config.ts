/**
 * Telemetry configuration: typed options, their defaults, and the mapping
 * from the standard OTEL_* environment variables.
 *
 * A bad value is never silently replaced by a default (the OpenTelemetry
 * spec allows that): a service that traces nothing because of a typo is
 * worse than one that refuses to start and names the variable.
 */

import { randomUUID } from "node:crypto";

/** A span exporter the kit can build. */
export type SpanExporterName = "otlp" | "console";

/** Samplers named by the OpenTelemetry environment specification. */
export type SamplerName =
  | "always_on"
  | "always_off"
  | "traceidratio"
  | "parentbased_always_on"
  | "parentbased_always_off"
  | "parentbased_traceidratio";

/** Options for `startTelemetry`; every field is optional. */
export interface TelemetryOptions {
  /**
   * Start the SDK at all; when false nothing is patched or exported.
   * @default true
   */
  enabled?: boolean;
  /**
   * `service.name` on every span.
   * @default "unknown_service:node"
   */
  serviceName?: string;
  /**
   * `service.instance.id` on every span; pass the same value the logger uses.
   * @default a random UUID per process
   */
  instanceId?: string;
  /**
   * Where finished spans go; an empty list records nothing.
   * @default ["otlp"]
   */
  exporters?: readonly SpanExporterName[];
  /**
   * OTLP/gRPC collector address (http:// means plaintext).
   * @default "http://127.0.0.1:4317"
   */
  otlpEndpoint?: string;
  /**
   * Which traces are recorded; `parentbased_*` follows the caller's decision.
   * @default "parentbased_always_on"
   */
  sampler?: SamplerName;
  /**
   * Fraction of root traces kept by the `*traceidratio` samplers, 0 to 1.
   * @default 1
   */
  samplerRatio?: number;
  /**
   * Delay between two batch exports, in milliseconds.
   * @default 5000
   */
  batchDelayMs?: number;
  /**
   * Spans buffered before new ones are dropped.
   * @default 2048
   */
  maxQueueSize?: number;
  /**
   * Most spans sent in one export; capped at `maxQueueSize`.
   * @default 512
   */
  maxExportBatchSize?: number;
  /**
   * Longest one export may take, in milliseconds.
   * @default 30000
   */
  exportTimeoutMs?: number;
  /**
   * Longest `shutdownTelemetry` waits for the final flush, in milliseconds.
   * @default 5000
   */
  shutdownTimeoutMs?: number;
}

/** Telemetry options with every default filled in; frozen. */
export type TelemetryConfig = Readonly<
  Required<Omit<TelemetryOptions, "exporters">> & {
    exporters: readonly SpanExporterName[];
  }
>;

/** A configuration value that cannot be used; `setting` names the variable or option. */
export class TelemetryConfigError extends Error {
  /** The environment variable or option that holds the bad value. */
  readonly setting: string;

  constructor(setting: string, message: string) {
    super(`${setting}: ${message}`);
    this.name = "TelemetryConfigError";
    this.setting = setting;
  }
}

const SAMPLERS: readonly SamplerName[] = [
  "always_on",
  "always_off",
  "traceidratio",
  "parentbased_always_on",
  "parentbased_always_off",
  "parentbased_traceidratio",
];

const EXPORTERS: readonly SpanExporterName[] = ["otlp", "console"];

/** Fills defaults and checks every value; throws TelemetryConfigError naming the option. */
export function resolveTelemetryConfig(options: TelemetryOptions = {}): TelemetryConfig {
  const exporters: SpanExporterName[] = [...new Set(options.exporters ?? ["otlp" as const])];
  for (const name of exporters) {
    if (!EXPORTERS.includes(name)) {
      throw new TelemetryConfigError("exporters", `unknown exporter "${String(name)}"`);
    }
  }
  const sampler = options.sampler ?? "parentbased_always_on";
  if (!SAMPLERS.includes(sampler)) {
    throw new TelemetryConfigError("sampler", `unknown sampler "${String(sampler)}"`);
  }
  const samplerRatio = options.samplerRatio ?? 1;
  checkRatio("samplerRatio", samplerRatio);
  const otlpEndpoint = options.otlpEndpoint ?? "http://127.0.0.1:4317";
  checkEndpoint("otlpEndpoint", otlpEndpoint);
  const serviceName = options.serviceName ?? "unknown_service:node";
  if (serviceName === "") throw new TelemetryConfigError("serviceName", "must not be empty");
  const instanceId = options.instanceId ?? randomUUID();
  if (instanceId === "") throw new TelemetryConfigError("instanceId", "must not be empty");

  return Object.freeze({
    enabled: options.enabled ?? true,
    serviceName,
    instanceId,
    exporters: Object.freeze(exporters),
    otlpEndpoint,
    sampler,
    samplerRatio,
    batchDelayMs: positiveInteger("batchDelayMs", options.batchDelayMs ?? 5000),
    maxQueueSize: positiveInteger("maxQueueSize", options.maxQueueSize ?? 2048),
    maxExportBatchSize: positiveInteger("maxExportBatchSize", options.maxExportBatchSize ?? 512),
    exportTimeoutMs: positiveInteger("exportTimeoutMs", options.exportTimeoutMs ?? 30_000),
    shutdownTimeoutMs: positiveInteger("shutdownTimeoutMs", options.shutdownTimeoutMs ?? 5000),
  });
}

/** Environment variables read by `telemetryOptionsFromEnv`. */
export type TelemetryEnv = Readonly<Record<string, string | undefined>>;

/**
 * Reads the standard OTEL_* variables (and TASKMESH_INSTANCE) into options;
 * throws TelemetryConfigError naming the variable when a value is unusable.
 */
export function telemetryOptionsFromEnv(env: TelemetryEnv): TelemetryOptions {
  const options: TelemetryOptions = {};
  const read = (name: string): string | undefined => {
    const value = env[name]?.trim();
    return value === undefined || value === "" ? undefined : value;
  };

  const disabled = read("OTEL_SDK_DISABLED");
  if (disabled !== undefined) options.enabled = !parseBoolean("OTEL_SDK_DISABLED", disabled);

  const serviceName = read("OTEL_SERVICE_NAME");
  if (serviceName !== undefined) options.serviceName = serviceName;
  const instanceId = read("TASKMESH_INSTANCE");
  if (instanceId !== undefined) options.instanceId = instanceId;

  const exporters = read("OTEL_TRACES_EXPORTER");
  if (exporters !== undefined) options.exporters = parseExporters(exporters);

  const sampler = read("OTEL_TRACES_SAMPLER");
  if (sampler !== undefined) {
    if (!(SAMPLERS as readonly string[]).includes(sampler)) {
      throw new TelemetryConfigError(
        "OTEL_TRACES_SAMPLER",
        `unsupported sampler "${sampler}" (supported: ${SAMPLERS.join(", ")})`,
      );
    }
    options.sampler = sampler as SamplerName;
  }
  // The argument only means something to the ratio samplers (spec); others ignore it.
  const samplerArg = read("OTEL_TRACES_SAMPLER_ARG");
  if (samplerArg !== undefined && options.sampler?.endsWith("traceidratio") === true) {
    const ratio = Number(samplerArg);
    checkRatio("OTEL_TRACES_SAMPLER_ARG", ratio, samplerArg);
    options.samplerRatio = ratio;
  }

  // Only OTLP over gRPC is built; refuse a protocol we would silently ignore.
  for (const name of ["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"]) {
    const protocol = read(name);
    if (protocol !== undefined && protocol !== "grpc") {
      throw new TelemetryConfigError(name, `unsupported protocol "${protocol}" (only "grpc")`);
    }
  }
  for (const name of ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"]) {
    const endpoint = read(name);
    if (endpoint !== undefined) {
      checkEndpoint(name, endpoint);
      options.otlpEndpoint = endpoint;
      break;
    }
  }

  const integers = [
    ["OTEL_BSP_SCHEDULE_DELAY", "batchDelayMs"],
    ["OTEL_BSP_MAX_QUEUE_SIZE", "maxQueueSize"],
    ["OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "maxExportBatchSize"],
    ["OTEL_BSP_EXPORT_TIMEOUT", "exportTimeoutMs"],
  ] as const;
  for (const [name, key] of integers) {
    const raw = read(name);
    if (raw !== undefined) options[key] = positiveInteger(name, Number(raw), raw);
  }
  return options;
}

function parseExporters(raw: string): SpanExporterName[] {
  const names = raw.split(",").map((name) => name.trim()).filter((name) => name !== "");
  if (names.includes("none")) {
    if (names.length > 1) {
      throw new TelemetryConfigError("OTEL_TRACES_EXPORTER", `"none" cannot be combined with other exporters`);
    }
    return [];
  }
  for (const name of names) {
    if (!(EXPORTERS as readonly string[]).includes(name)) {
      throw new TelemetryConfigError(
        "OTEL_TRACES_EXPORTER",
        `unsupported exporter "${name}" (supported: ${EXPORTERS.join(", ")}, none)`,
      );
    }
  }
  return names as SpanExporterName[];
}

function parseBoolean(setting: string, raw: string): boolean {
  const value = raw.toLowerCase();
  if (value === "true") return true;
  if (value === "false") return false;
  throw new TelemetryConfigError(setting, `expected "true" or "false", got "${raw}"`);
}

function checkRatio(setting: string, ratio: number, raw: string | number = ratio): void {
  if (!Number.isFinite(ratio) || ratio < 0 || ratio > 1) {
    throw new TelemetryConfigError(setting, `expected a sampling ratio between 0 and 1, got "${raw}"`);
  }
}

function checkEndpoint(setting: string, endpoint: string): void {
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    throw new TelemetryConfigError(setting, `expected an http:// or https:// URL, got "${endpoint}"`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new TelemetryConfigError(setting, `expected an http:// or https:// URL, got "${endpoint}"`);
  }
}

function positiveInteger(setting: string, value: number, raw: string | number = value): number {
  if (!Number.isSafeInteger(value) || value <= 0) {
    throw new TelemetryConfigError(setting, `expected a positive integer, got "${raw}"`);
  }
  return value;
}
