/**
 * The ESM loader hook that lets instrumentations patch packages imported
 * with `import` (require-in-the-middle only sees `require`).
 */

import { register } from "node:module";

/**
 * Packages whose ESM imports the loader wraps so instrumentations can patch
 * them; must list every module name the instrumentations hook (a test checks).
 */
export const INSTRUMENTED_PACKAGES: readonly string[] = Object.freeze([
  "@grpc/grpc-js",
  "pg",
  "pg-pool",
  "ioredis",
  "kafkajs",
  "pino",
]);

/**
 * Registers import-in-the-middle's loader for INSTRUMENTED_PACKAGES only;
 * must run before any of them is imported (the loader cannot patch a module
 * the ESM graph already holds for the same importer).
 */
export function registerInstrumentationHook(): void {
  // An explicit include list keeps every other module (our .ts sources
  // compiled by tsx included) out of the wrapper, and needs no message
  // channel to the loader thread.
  register("@opentelemetry/instrumentation/hook.mjs", import.meta.url, {
    data: { include: [...INSTRUMENTED_PACKAGES] },
  });
}
