// The names the ratelimit service and the edge's bootstrap (deploy/mesh/edge-security.ts) share for the
// runtime layer; a module without imports, so the mesh generator can read them without loading the service.

/** The name of the runtime layer the edge reads from this service. */
export const RUNTIME_LAYER = "ratelimit";
/** The xDS type of a runtime layer. */
export const RUNTIME_TYPE_URL = "type.googleapis.com/envoy.service.runtime.v3.Runtime";
/** Envoy's runtime key for the share of requests (0–100) its rate-limit filter asks the service about. */
export const FILTER_ENABLED_KEY = "ratelimit.http_filter_enabled";
