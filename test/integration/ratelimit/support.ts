import { randomBytes } from "node:crypto";
import { RateLimitResponse_Code, RateLimitServiceService, type RateLimitResponse } from "@taskmesh/contracts/gen/envoy/service/ratelimit/v3/rls";
import { Status } from "@taskmesh/contracts/gen/google/rpc/status";
import { freePort } from "@taskmesh/local/secrets";
import { STATUS_DETAILS_KEY, createClient, fromRpcStatus, type MeshClient, type MeshError } from "@taskmesh/kit";
import { createTestDatabase, type TestDatabase } from "../../support/postgres.js";
import { startConfigReplica, type ConfigReplica } from "../../support/config-server.js";
import { startService, waitForServing, type ServiceProcess } from "../../support/processes.js";

export const DOMAIN = "taskmesh-edge";
export const SUBMIT = "/taskmesh.coordinator.v1.TaskService/SubmitTask";
export const OK = RateLimitResponse_Code.OK;
export const OVER_LIMIT = RateLimitResponse_Code.OVER_LIMIT;

/** A ratelimit process on a real Redis, following a real config replica. */
export interface RatelimitStack {
  readonly address: string;
  /** The running ratelimit process (a new one after {@link RatelimitStack.restart}). */
  readonly proc: ServiceProcess;
  readonly config: ConfigReplica;
  readonly client: MeshClient<typeof RateLimitServiceService>;
  /** Writes a config key. */
  put(key: string, value: unknown): Promise<void>;
  /** Asks about one request: `[subject]`, and `[subject, method]` when a method is given. */
  ask(subject: string, options?: { method?: string; hits?: number }): Promise<RateLimitResponse>;
  /** Kills the ratelimit process (SIGKILL) and, after `whileDown`, starts a new one on the same address. */
  restart(whileDown?: () => Promise<void>): Promise<void>;
  stop(): Promise<void>;
}

/** Starts config (in this process) and `services/ratelimit` (its own process, as `npm start` runs it) on `redisUrl`. */
export async function startRatelimit(label: string, redisUrl: string, env: Record<string, string> = {}): Promise<RatelimitStack> {
  const db: TestDatabase = await createTestDatabase(label);
  const config = await startConfigReplica(db.url, `config-${label}`);
  const address = `127.0.0.1:${await freePort()}`;
  const serviceEnv = {
    REDIS_URL: redisUrl,
    TASKMESH_LISTEN: address,
    TASKMESH_UPSTREAM_CONFIG: config.address,
    TASKMESH_RATELIMIT_PREFIX: `test:ratelimit:${label}:${randomBytes(3).toString("hex")}:`,
    // Tests that count must not fail open because the machine is busy; the Redis tests set their own.
    TASKMESH_RATELIMIT_REDIS_TIMEOUT: "2s",
    ...env,
  };
  let proc = startService("ratelimit", serviceEnv);
  await waitForServing(address, proc, 20_000, "envoy.service.ratelimit.v3.RateLimitService");
  const client = createClient(RateLimitServiceService, address);
  return {
    address, config, client,
    get proc() {
      return proc;
    },
    async restart(whileDown) {
      proc.child.kill("SIGKILL");
      await proc.exited;
      await whileDown?.();
      proc = startService("ratelimit", serviceEnv);
      await waitForServing(address, proc, 20_000, "envoy.service.ratelimit.v3.RateLimitService");
    },
    async put(key, value) {
      await config.client.put({ key, value, expectedRevision: undefined });
    },
    ask(subject, options = {}) {
      const descriptors = [{ entries: [{ key: "subject", value: subject }], limit: undefined }];
      if (options.method) descriptors.push({ entries: [{ key: "subject", value: subject }, { key: "method", value: options.method }], limit: undefined });
      return client.shouldRateLimit({ domain: DOMAIN, descriptors, hitsAddend: options.hits ?? 0 });
    },
    async stop() {
      client.close();
      proc.child.kill("SIGTERM");
      await proc.exited;
      await config.stop();
      await db.drop();
    },
  };
}

/** The `google.rpc.Status` of an OVER_LIMIT answer's `grpc-status-details-bin` header, as the caller's client decodes it. */
export function refusalOf(response: RateLimitResponse): { error: MeshError; retryAfter: string | undefined; status: Status } {
  const header = response.responseHeadersToAdd.find((h) => h.key === STATUS_DETAILS_KEY);
  if (!header) throw new Error(`no ${STATUS_DETAILS_KEY} header in ${JSON.stringify(response.responseHeadersToAdd)}`);
  const status = Status.decode(Buffer.from(header.value, "base64"));
  return { error: fromRpcStatus(status), retryAfter: response.responseHeadersToAdd.find((h) => h.key === "retry-after")?.value, status };
}

/** Retries `check` until it passes or `timeoutMs` runs out (then throws its last error). */
export async function eventually<T>(check: () => Promise<T> | T, timeoutMs = 5000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (error) {
      if (Date.now() > until) throw error;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

/** Milliseconds of a protobuf Duration. */
export function ms(d: { seconds: bigint; nanos: number } | undefined): number {
  return d === undefined ? Number.NaN : Number(d.seconds) * 1000 + d.nanos / 1e6;
}
