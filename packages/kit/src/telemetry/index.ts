// Public surface of the kit's telemetry. register.ts is not here: it is a
// preload (`node --import`), never imported by code.
export {
  TelemetryConfigError,
  resolveTelemetryConfig,
  telemetryOptionsFromEnv,
  type SamplerName,
  type SpanExporterName,
  type TelemetryConfig,
  type TelemetryEnv,
  type TelemetryOptions,
} from "./config.js";
export { INSTRUMENTED_PACKAGES, registerInstrumentationHook } from "./hook.js";
export { createInstrumentations } from "./instrumentations.js";
export { shutdownTelemetry, startTelemetry, telemetryState, type TelemetryState } from "./sdk.js";
