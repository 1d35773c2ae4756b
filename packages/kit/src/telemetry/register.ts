/**
 * Preload for every service:
 *
 *   node --import tsx --import ./packages/kit/src/telemetry/register.ts services/<name>/src/main.ts
 *
 * The one module in the tree allowed to do work at import time. It reads the
 * OTEL_* environment, registers the ESM loader hook, then starts the SDK —
 * all before main.ts imports grpc-js, pg, ioredis, kafkajs or pino.
 * A bad setting stops the process with exit code 2 — the kit's
 * EXIT_CODES.badConfig, not imported here so the preload loads nothing of
 * the kit before the hook — and one stderr line naming the variable.
 */

import { TelemetryConfigError, telemetryOptionsFromEnv, type TelemetryOptions } from "./config.js";
import { registerInstrumentationHook } from "./hook.js";

let options: TelemetryOptions;
try {
  options = telemetryOptionsFromEnv(process.env);
} catch (error) {
  if (!(error instanceof TelemetryConfigError)) throw error;
  process.stderr.write(`telemetry configuration error: ${error.message}\n`);
  process.exit(2);
}

// Disabled (OTEL_SDK_DISABLED=true) means nothing is patched at all.
if (options.enabled !== false) registerInstrumentationHook();
// Imported only now, after the hook, so the SDK's own imports (its OTLP
// exporter pulls in @grpc/grpc-js) load under the hook too: a package
// imported before the hook exists stays unwrapped for that importer.
const { startTelemetry } = await import("./sdk.js");
startTelemetry(options);
