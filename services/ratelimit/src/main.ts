import { z } from "zod";
import { RateLimitServiceService } from "@taskmesh/contracts/gen/envoy/service/ratelimit/v3/rls";
import { RuntimeDiscoveryServiceService } from "@taskmesh/contracts/gen/envoy/service/runtime/v3/rtds";
import { ExtensionConfigDiscoveryServiceService } from "@taskmesh/contracts/gen/envoy/service/extension/v3/config_discovery";
import { ConfigServiceService } from "@taskmesh/contracts/gen/taskmesh/config/v1/config";
import {
  MeshServer, connectUpstream, createLogger, envSchemas, kitEnvShape, loadEnv, runService, untilReady, watchSetting,
} from "@taskmesh/kit";
import { RedisCounter } from "./counter.js";
import { ratelimitDescriptorSet } from "./descriptor-set.js";
import { FAILURE_MODES, FAILURE_MODE_KEY, parseFailureMode } from "./failure-mode.js";
import { rateLimitHandlers } from "./handlers.js";
import { LIMITS_KEY, LimitSet, parseLimits } from "./limits.js";
import { RuntimeLayerSource, runtimeDiscoveryHandlers } from "./runtime-discovery.js";
import { EdgeLimitsSource, extensionDiscoveryHandlers } from "./edge-limits.js";

/** The ratelimit service's environment. */
const envShape = {
  ...kitEnvShape,
  /** Redis holding the counters. */
  REDIS_URL: envSchemas.url("redis", "rediss"),
  /** The failure mode while config key `/ratelimit/failure_mode` is unset. @default open */
  TASKMESH_RATELIMIT_FAILURE_MODE: z.enum(FAILURE_MODES).default("open"),
  /** Longest wait for Redis on one request before answering per the failure mode (keep it well under the edge's timeout). @default 100ms */
  TASKMESH_RATELIMIT_REDIS_TIMEOUT: envSchemas.duration().pipe(z.number().min(1).max(10_000)).default(100),
  /** Prefix of every Redis key. @default taskmesh:ratelimit: */
  TASKMESH_RATELIMIT_PREFIX: z.string().trim().min(1).regex(/^[^{}]*$/, "must not contain { or }").default("taskmesh:ratelimit:"),
};

await runService({
  name: "ratelimit",
  async start() {
    const env = loadEnv(envShape);
    const instance = env.TASKMESH_INSTANCE ?? "ratelimit";
    const log = createLogger({ service: "ratelimit", instance, level: env.LOG_LEVEL });
    const config = connectUpstream(ConfigServiceService, "config");
    const counter = new RedisCounter({ url: env.REDIS_URL, prefix: env.TASKMESH_RATELIMIT_PREFIX, timeoutMs: env.TASKMESH_RATELIMIT_REDIS_TIMEOUT, logger: log });
    // The edge reads whether to ask about its requests at all from this service's runtime layer (RTDS),
    // and the limits it counts itself as its local rate limit filter's config (ECDS).
    const runtime = new RuntimeLayerSource(LimitSet.EMPTY);
    const edgeLimits = new EdgeLimitsSource(LimitSet.EMPTY);
    const limits = watchSetting(config, {
      key: LIMITS_KEY, parse: parseLimits, fallback: LimitSet.EMPTY, logger: log,
      onChange: (next) => {
        runtime.update(next);
        edgeLimits.update(next);
        log.info({ limits: next.limits.map((l) => l.name) }, "rate limits applied");
      },
    });
    const failureMode = watchSetting(config, {
      key: FAILURE_MODE_KEY, parse: parseFailureMode, fallback: env.TASKMESH_RATELIMIT_FAILURE_MODE, logger: log,
      onChange: (next) => log.info({ failureMode: next }, "failure mode applied"),
    });
    const server = new MeshServer({ name: "ratelimit", logger: log, shutdownGraceMs: env.TASKMESH_SHUTDOWN_GRACE, descriptorSet: ratelimitDescriptorSet() })
      .addService(RateLimitServiceService, rateLimitHandlers({ limits: () => limits.get(), failureMode: () => failureMode.get(), counter }))
      .addService(RuntimeDiscoveryServiceService, runtimeDiscoveryHandlers(runtime, limits.ready))
      .addService(ExtensionConfigDiscoveryServiceService, extensionDiscoveryHandlers(edgeLimits, limits.ready))
      .onClose("config", () => {
        limits.close();
        failureMode.close();
        config.close();
      })
      .onClose("redis", () => counter.close());
    await server.listen(env.TASKMESH_LISTEN);
    return {
      server,
      log,
      async ready(signal) {
        // Redis is not waited for: while it is down, requests are answered per the failure mode, and the
        // connection comes back on its own (the counter logs both).
        counter.connect().catch(() => undefined);
        // Serve only once the limits in config are known: answering before would let everything through.
        const loaded = Promise.all([limits.ready, failureMode.ready]);
        await untilReady("config", () => within(loaded, 5000, "no answer from the config service yet", signal), signal, log);
        log.info({ limits: limits.get().limits.map((l) => l.name), failureMode: failureMode.get() }, "rate limits loaded");
      },
    };
  },
});

/** `promise`, or a rejection after `ms` (saying `why`) or when `signal` aborts, whichever comes first. */
function within<T>(promise: Promise<T>, ms: number, why: string, signal: AbortSignal): Promise<T> {
  signal.throwIfAborted();
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason);
    const timer = setTimeout(() => reject(new Error(why)), ms);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() => {
      clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
    });
  });
}
