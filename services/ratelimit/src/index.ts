export { RedisCounter, counterKey, type HitCounter, type HitOutcome, type RedisCounterOptions, type WindowCheck, type WindowResult } from "./counter.js";
export { RATELIMIT_DESCRIPTOR_SET_PATH, mergeDescriptorSets, ratelimitDescriptorSet } from "./descriptor-set.js";
export { FAILURE_MODES, FAILURE_MODE_KEY, parseFailureMode, type FailureMode } from "./failure-mode.js";
export { MAX_DESCRIPTORS, rateLimitHandlers, type RateLimitDeps } from "./handlers.js";
export { LIMITS_KEY, LimitSet, MAX_DESCRIPTOR_ENTRIES, MAX_LIMITS, PERIODS, SCOPES, parseLimits, type Limit, type LimitEntry, type LimitSpec, type Period, type Scope } from "./limits.js";
export { DiscoverySource, type Resource } from "./discovery.js";
export { EdgeLimitsSource, MAX_EDGE_BUCKETS, extensionDiscoveryHandlers, localRateLimitConfig, tokenBucket } from "./edge-limits.js";
export { limitedStatus, rateLimitResponse, refusalError, unlimitedStatus, type Refusal } from "./responses.js";
export { SLIDING_WINDOW_LUA } from "./sliding-window-script.js";
export { FILTER_ENABLED_KEY, RUNTIME_LAYER, RUNTIME_TYPE_URL, RuntimeLayerSource, runtimeDiscoveryHandlers, runtimeLayer } from "./runtime-discovery.js";
export {
  EDGE_DESCRIPTOR_ACTIONS, EDGE_DESCRIPTOR_KEYS, EDGE_LIMITS_FILTER, EDGE_LIMITS_STAT_PREFIX, EXTENSION_CONFIG_TYPE_URL, LOCAL_RATE_LIMIT_TYPE_URL, SUBJECT_HEADER,
} from "@taskmesh/contracts/ratelimit";
