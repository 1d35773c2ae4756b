import { existsSync } from "node:fs";
import { join } from "node:path";
import { cacheDir, pinned } from "@taskmesh/local/provision/versions";
import { runForeground } from "./foreground.js";

/** The pinned grpcurl that `npm start` and `npm test` build into the cache (scripts/bootstrap.mjs). */
export function grpcurlPath(): string {
  const { version } = pinned("grpcurl");
  return join(cacheDir("grpcurl", version), "grpcurl");
}

/**
 * `taskmesh grpcurl <args…>`: runs the pinned grpcurl with the arguments as
 * given (stdin, stdout and stderr its own), so the README's commands work
 * without grpcurl on the PATH; exits with grpcurl's code.
 */
export async function grpcurl(args: readonly string[]): Promise<number> {
  const binary = grpcurlPath();
  if (!existsSync(binary)) throw new Error(`grpcurl is not built yet (${binary}): npm start or npm test builds it once`);
  return runForeground(binary, args);
}
