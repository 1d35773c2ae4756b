/**
 * One readiness check of the instance this container belongs to, for
 * compose's health checks (Kubernetes calls the sidecar's probe port
 * instead): the app answers `grpc.health.v1.Health/Check` of `service` with
 * SERVING on its loopback port, and its sidecar Envoy, in the same network
 * namespace, says it is ready. Exits 0 when both hold, else 1 with the
 * reason on stderr.
 *
 *   node deploy/container/probe.js [<health service name>]
 */
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { checkHealth } from "@taskmesh/local/health";
import { PORTS } from "./layout.js";

/** Why the instance is not ready, or undefined when it is. */
export async function probe(service: string, timeoutMs = 2000): Promise<string | undefined> {
  const health = await checkHealth(`127.0.0.1:${PORTS.app}`, service, timeoutMs);
  if (health !== "SERVING") return `app: ${health}`;
  try {
    const response = await fetch(`http://127.0.0.1:${PORTS.admin}/ready`, { signal: AbortSignal.timeout(timeoutMs) });
    const text = (await response.text()).trim();
    if (response.status !== 200) return `sidecar: ${text || response.status}`;
  } catch (error) {
    return `sidecar: ${(error as Error).message}`;
  }
  return undefined;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const why = await probe(process.argv[2] ?? "");
  if (why) process.stderr.write(`not ready: ${why}\n`);
  process.exit(why ? 1 : 0);
}
