// @taskmesh/contracts/ratelimit: the names the ratelimit service (services/ratelimit) and the edge's
// bootstrap (@taskmesh/mesh, edge-security.ts) share: the runtime layer and the edge's local limits.

/** The name of the runtime layer the edge reads from this service. */
export const RUNTIME_LAYER = "ratelimit";
/** The xDS type of a runtime layer. */
export const RUNTIME_TYPE_URL = "type.googleapis.com/envoy.service.runtime.v3.Runtime";
/** Envoy's runtime key for the share of requests (0–100) its rate-limit filter asks the service about. */
export const FILTER_ENABLED_KEY = "ratelimit.http_filter_enabled";

/** The header the edge puts a verified token's subject in (`jwt_authn`'s `claim_to_headers`). */
export const SUBJECT_HEADER = "x-jwt-sub";
/**
 * The descriptor keys the edge knows for every call, and how its Envoy
 * finds each value: an edge-scoped limit may use only these.
 */
export const EDGE_DESCRIPTOR_ACTIONS = {
  subject: { request_headers: { header_name: SUBJECT_HEADER, descriptor_key: "subject" } },
  method: { request_headers: { header_name: ":path", descriptor_key: "method" } },
  remote_address: { remote_address: {} },
} as const;
/** The keys of {@link EDGE_DESCRIPTOR_ACTIONS}. */
export const EDGE_DESCRIPTOR_KEYS = Object.keys(EDGE_DESCRIPTOR_ACTIONS) as readonly (keyof typeof EDGE_DESCRIPTOR_ACTIONS)[];
/**
 * The edge's local rate limit filter: its name in the edge's filter chain is
 * also the name of the extension config this service serves for it (ECDS).
 */
export const EDGE_LIMITS_FILTER = "taskmesh.edge.local_ratelimit";
/** The xDS type of an extension config. */
export const EXTENSION_CONFIG_TYPE_URL = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig";
/** The type of the local rate limit filter's config. */
export const LOCAL_RATE_LIMIT_TYPE_URL = "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit";
/** The stat prefix of the edge's local rate limit (`http_local_rate_limit.<prefix>.*` in its stats). */
export const EDGE_LIMITS_STAT_PREFIX = "edge_limits";
