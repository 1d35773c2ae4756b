import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { HeaderValueOption_HeaderAppendAction } from "@taskmesh/contracts/gen/envoy/config/core/v3/base";
import { TypedExtensionConfig } from "@taskmesh/contracts/gen/envoy/config/core/v3/extension";
import type { ExtensionConfigDiscoveryServiceService } from "@taskmesh/contracts/gen/envoy/service/extension/v3/config_discovery";
import { XRateLimitHeadersRFCVersion } from "@taskmesh/contracts/gen/envoy/extensions/common/ratelimit/v3/ratelimit";
import { LocalRateLimit } from "@taskmesh/contracts/gen/envoy/extensions/filters/http/local_ratelimit/v3/local_rate_limit";
import { FractionalPercent_DenominatorType } from "@taskmesh/contracts/gen/envoy/type/v3/percent";
import { Code, MeshError, statusDetailsValue, type ServiceHandlers } from "@taskmesh/kit";
import { DiscoverySource, deltaNotServed, discoveryFetch, discoveryStream } from "./discovery.js";
import type { Limit, LimitSet } from "./limits.js";
import {
  EDGE_DESCRIPTOR_ACTIONS, EDGE_LIMITS_FILTER, EDGE_LIMITS_STAT_PREFIX, EXTENSION_CONFIG_TYPE_URL, LOCAL_RATE_LIMIT_TYPE_URL,
} from "@taskmesh/contracts/ratelimit";

/** Envoy's shortest token bucket fill interval. */
const MIN_FILL_MS = 50;
/** Most distinct values (subjects, addresses) one edge keeps a bucket for per wildcard limit, least recently used dropped first. */
export const MAX_EDGE_BUCKETS = 100_000;

/**
 * The token bucket of an edge limit: `requests` at once at most, refilled
 * evenly over the window (one token every `window / requests`, or as many
 * tokens every 50 ms as that rate gives when it is faster).
 */
export function tokenBucket(limit: Pick<Limit, "requests" | "windowMs">): { maxTokens: number; tokensPerFill: number; fillIntervalMs: number } {
  const fillIntervalMs = Math.max(MIN_FILL_MS, Math.ceil(limit.windowMs / limit.requests));
  const tokensPerFill = Math.max(1, Math.round((limit.requests * fillIntervalMs) / limit.windowMs));
  return { maxTokens: limit.requests, tokensPerFill, fillIntervalMs };
}

/** The details of an edge refusal as gRPC callers get them (`grpc-status-details-bin`): RESOURCE_EXHAUSTED, RATE_LIMITED. */
function refusalDetails(): string {
  return statusDetailsValue(new MeshError({
    code: Code.RESOURCE_EXHAUSTED, reason: "RATE_LIMITED", message: "rate limit exceeded at the edge; retry after the retry-after header's seconds",
    metadata: { scope: "edge" },
  }));
}

// Fields of LocalRateLimit newer than the copy of Envoy's API generated into packages/contracts/gen/ (Envoy 1.40's
// envoy/extensions/filters/http/local_ratelimit/v3/local_rate_limit.proto); written after the generated ones.
const RATE_LIMITS = 17; // repeated envoy.config.route.v3.RateLimit: the descriptors' actions
const MAX_DYNAMIC_DESCRIPTORS = 18; // google.protobuf.UInt32Value: buckets kept per wildcard descriptor
const ENABLE_RETRY_AFTER_HEADER = 19; // bool: `retry-after` on a refusal
// envoy.config.route.v3.RateLimit and its Action.
const RATE_LIMIT_ACTIONS = 3;
const ACTION_REQUEST_HEADERS = 3; // { header_name = 1, descriptor_key = 2 }
const ACTION_REMOTE_ADDRESS = 4; // {}

/** One `RateLimit` {actions} producing the descriptor `keys` (each one of the edge's descriptor keys). */
function writeRateLimit(writer: BinaryWriter, keys: readonly string[]): void {
  writer.tag(RATE_LIMITS, WireType.LengthDelimited).fork();
  for (const key of keys) {
    const action = EDGE_DESCRIPTOR_ACTIONS[key as keyof typeof EDGE_DESCRIPTOR_ACTIONS];
    writer.tag(RATE_LIMIT_ACTIONS, WireType.LengthDelimited).fork();
    if ("request_headers" in action) {
      writer.tag(ACTION_REQUEST_HEADERS, WireType.LengthDelimited).fork()
        .tag(1, WireType.LengthDelimited).string(action.request_headers.header_name)
        .tag(2, WireType.LengthDelimited).string(action.request_headers.descriptor_key)
        .join();
    } else {
      writer.tag(ACTION_REMOTE_ADDRESS, WireType.LengthDelimited).fork().join();
    }
    writer.join();
  }
  writer.join();
}

/**
 * The edge's local rate limit filter config (`LocalRateLimit`, encoded) for
 * the edge limits of a set: one descriptor with its token bucket per limit
 * (an entry without a value is a wildcard: a bucket per value), the actions
 * that produce each descriptor shape, `x-ratelimit-*` and `retry-after`
 * headers, RESOURCE_EXHAUSTED with the mesh's error details for gRPC
 * callers. With no edge limit it limits nothing.
 */
export function localRateLimitConfig(limits: readonly Limit[]): Uint8Array {
  const always = { defaultValue: { numerator: 100, denominator: FractionalPercent_DenominatorType.HUNDRED }, runtimeKey: "" };
  const base = LocalRateLimit.encode(LocalRateLimit.fromPartial({
    statPrefix: EDGE_LIMITS_STAT_PREFIX,
    filterEnabled: always,
    filterEnforced: always,
    descriptors: limits.map((limit) => {
      const bucket = tokenBucket(limit);
      return {
        entries: limit.entries.map((e) => ({ key: e.key, value: e.value ?? "" })),
        tokenBucket: {
          maxTokens: bucket.maxTokens,
          tokensPerFill: bucket.tokensPerFill,
          fillInterval: { seconds: BigInt(Math.floor(bucket.fillIntervalMs / 1000)), nanos: (bucket.fillIntervalMs % 1000) * 1_000_000 },
        },
      };
    }),
    responseHeadersToAdd: limits.length === 0 ? [] : [{
      header: { key: "grpc-status-details-bin", value: refusalDetails(), rawValue: Buffer.alloc(0) },
      appendAction: HeaderValueOption_HeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD,
    }],
    enableXRatelimitHeaders: XRateLimitHeadersRFCVersion.DRAFT_VERSION_03,
    alwaysConsumeDefaultTokenBucket: false,
    rateLimitedAsResourceExhausted: true,
  })).finish();
  const writer = new BinaryWriter();
  writer.raw(base);
  const shapes = new Map(limits.map((l) => [JSON.stringify(l.entries.map((e) => e.key)), l.entries.map((e) => e.key)]));
  for (const keys of shapes.values()) writeRateLimit(writer, keys);
  if (limits.length > 0) {
    writer.tag(MAX_DYNAMIC_DESCRIPTORS, WireType.LengthDelimited).fork().tag(1, WireType.Varint).uint32(MAX_EDGE_BUCKETS).join();
    writer.tag(ENABLE_RETRY_AFTER_HEADER, WireType.Varint).bool(true);
  }
  return writer.finish();
}

/** The edge's local limits of the current limit set (ECDS's one resource, the filter's config), and its version. */
export class EdgeLimitsSource extends DiscoverySource {
  constructor(limits: LimitSet) {
    super(EXTENSION_CONFIG_TYPE_URL, (set) => [{
      name: EDGE_LIMITS_FILTER,
      value: TypedExtensionConfig.encode({ name: EDGE_LIMITS_FILTER, typedConfig: { typeUrl: LOCAL_RATE_LIMIT_TYPE_URL, value: Buffer.from(localRateLimitConfig(set.edge)) } }).finish(),
    }], limits);
  }
}

/**
 * `envoy.service.extension.v3.ExtensionConfigDiscoveryService` (ECDS), state
 * of the world: the edge's local rate limit filter config. Nothing is
 * answered before `loaded` resolves. Delta xDS is not served.
 */
export function extensionDiscoveryHandlers(source: EdgeLimitsSource, loaded: Promise<unknown> = Promise.resolve()): ServiceHandlers<typeof ExtensionConfigDiscoveryServiceService> {
  return { streamExtensionConfigs: discoveryStream(source, loaded), deltaExtensionConfigs: deltaNotServed, fetchExtensionConfigs: discoveryFetch(source, loaded) };
}
