/**
 * The edge's security filters: JWT authentication against identity's JWKS
 * and global rate limiting through the `ratelimit` service.
 *
 * - A client's own `x-jwt-payload` / `x-jwt-sub` headers are removed first,
 *   so the claims a service sees are always the ones `jwt_authn` verified.
 * - `jwt_authn` requires a valid access token on every path except token
 *   issue and refresh, the JWKS, health, reflection and the API docs at
 *   `/docs` (and RevokeToken, where a token is optional: holding the token
 *   to revoke is proof enough).
 *   It forwards the verified payload in `x-jwt-payload` and the subject in
 *   `x-jwt-sub` (for rate-limit descriptors). The JWKS is fetched from the
 *   edge itself (`GET /.well-known/jwks.json`, transcoded to identity's
 *   GetJwks), cached, and refreshed before it expires.
 * - Its refusals are answered as the mesh's errors (UNAUTHENTICATED with
 *   AUTH_MISSING_TOKEN or AUTH_INVALID_TOKEN) by the edge's local replies
 *   (edge-errors.ts).
 * - The `ratelimit` filter asks the ratelimit service about descriptors
 *   `[subject]` and `[subject, method]` for authenticated calls, and
 *   `[remote_address, method]` for token issue and refresh, while any
 *   global limit is configured: the service's runtime layer (RTDS) switches
 *   the filter off while there is none.
 * - Before it, the edge counts the limits scoped to the edge itself
 *   (Envoy's local rate limit, configured by the ratelimit service over
 *   ECDS): no call, a budget per edge instance.
 */

import { TOKEN_ISSUER } from "@taskmesh/contracts";
import { CLAIMS_HEADER } from "@taskmesh/kit/auth";
import {
  EDGE_DESCRIPTOR_ACTIONS, EDGE_LIMITS_FILTER, EDGE_LIMITS_STAT_PREFIX, LOCAL_RATE_LIMIT_TYPE_URL, RUNTIME_LAYER, SUBJECT_HEADER,
} from "@taskmesh/contracts/ratelimit";
import { staticCluster } from "./clusters.js";
import { CONSOLE_PATH } from "./console.js";
import { DOCS_PATH } from "./docs.js";
import type { Cluster, HttpFilter, RateLimit, RuntimeLayer } from "./envoy-types.js";

/** How the edge checks access tokens; the defaults match identity's. */
export interface EdgeAuthOptions {
  /** The `iss` tokens must carry. @default "taskmesh-identity" */
  readonly issuer?: string;
  /** The `aud` tokens must carry. @default "taskmesh" */
  readonly audience?: string;
  /** How long the JWKS is cached (identity's default activation delay for a new key is the same). @default 300 */
  readonly jwksCacheSeconds?: number;
  /** Clock skew allowed on `exp`/`nbf`. @default 30 */
  readonly clockSkewSeconds?: number;
  /**
   * Verified tokens each edge worker keeps (Envoy's `jwt_cache_config`): a
   * token seen again skips its parse and RS256 check, and is checked only
   * against its `exp`; 0 turns the cache off. @default 1000
   */
  readonly tokenCacheSize?: number;
}

/** How the edge rate-limits. */
export interface EdgeRateLimitOptions {
  /** The descriptor domain. @default "taskmesh-edge" */
  readonly domain?: string;
  /** How long the edge waits for the ratelimit service before letting the call through. @default 250 */
  readonly timeoutMs?: number;
}

export { SUBJECT_HEADER };
/**
 * Verified access tokens an edge worker keeps by default: a client sends
 * one token on every call until it expires, and its RS256 check is a
 * quarter to a third of what the edge spends on a call (bench:mesh).
 */
export const TOKEN_CACHE_SIZE = 1000;
const PROVIDER = "taskmesh";
const JWKS_CLUSTER = "edge-jwks";
const RATELIMIT_CLUSTER = "ratelimit";
const IDENTITY = "/taskmesh.identity.v1.IdentityService/";

/** Paths that need no access token (gRPC paths and their transcoded HTTP routes). */
export const OPEN_PATHS = [
  `${IDENTITY}IssueToken`, `${IDENTITY}RefreshToken`, `${IDENTITY}GetJwks`,
  "/v1/tokens", "/v1/tokens:refresh", "/.well-known/jwks.json",
] as const;
const OPEN_PREFIXES = ["/grpc.health.v1.Health/", "/grpc.reflection."] as const;
/** The API docs (packages/mesh/src/docs.ts) and the console (packages/mesh/src/console.ts): static files, open to all (the console's own API calls carry the user's token). */
const OPEN_DOCS = [{ path: DOCS_PATH }, { prefix: `${DOCS_PATH}/` }, { path: CONSOLE_PATH }, { prefix: `${CONSOLE_PATH}/` }] as const;
/** Paths where a token is checked when present but not required. */
const OPTIONAL_PATHS = [`${IDENTITY}RevokeToken`] as const;
/** Token issue and refresh: limited per client address. */
export const TOKEN_PATHS = [`${IDENTITY}IssueToken`, `${IDENTITY}RefreshToken`] as const;

/** Removes client-sent claim headers before anything reads them. */
export function stripClaimsFilter(): HttpFilter {
  return {
    name: "envoy.filters.http.header_mutation",
    typed_config: {
      "@type": "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation",
      mutations: { request_mutations: [{ remove: CLAIMS_HEADER }, { remove: SUBJECT_HEADER }] },
    },
  };
}

/** The `jwt_authn` filter; `edgePort` is where the edge serves the transcoded JWKS. */
export function jwtFilter(edgePort: number, options: EdgeAuthOptions = {}): HttpFilter {
  const provider = {
    issuer: options.issuer ?? TOKEN_ISSUER,
    audiences: [options.audience ?? "taskmesh"],
    remote_jwks: {
      http_uri: { uri: `http://127.0.0.1:${edgePort}/.well-known/jwks.json`, cluster: JWKS_CLUSTER, timeout: "2s" },
      cache_duration: `${options.jwksCacheSeconds ?? 300}s`,
      // Fetched in the background, at start and before the cache expires
      // (the listener must not wait: the JWKS comes through this very edge).
      async_fetch: { fast_listener: true, failed_refetch_duration: "1s" },
    },
    forward: false,
    forward_payload_header: CLAIMS_HEADER,
    claim_to_headers: [{ header_name: SUBJECT_HEADER, claim_name: "sub" }],
    clock_skew_seconds: options.clockSkewSeconds ?? 30,
    ...(options.tokenCacheSize === 0 ? {} : { jwt_cache_config: { jwt_cache_size: options.tokenCacheSize ?? TOKEN_CACHE_SIZE } }),
  };
  const open = (match: object) => ({ match });
  const required = { provider_name: PROVIDER };
  return {
    name: "envoy.filters.http.jwt_authn",
    typed_config: {
      "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
      providers: { [PROVIDER]: provider },
      rules: [
        ...OPEN_PATHS.map((path) => open({ path })),
        ...OPEN_PREFIXES.map((prefix) => open({ prefix })),
        ...OPEN_DOCS.map((match) => open(match)),
        ...OPTIONAL_PATHS.map((path) => ({ match: { path }, requires: { requires_any: { requirements: [required, { allow_missing: {} }] } } })),
        { match: { prefix: "/" }, requires: required },
      ],
    },
  };
}

/** The cluster `jwt_authn` fetches the JWKS through: the edge's own listener. */
export function jwksCluster(edgePort: number): Cluster {
  return staticCluster({ name: JWKS_CLUSTER, endpoints: [edgePort], lbPolicy: "ROUND_ROBIN" });
}

/** The `ratelimit` filter; the `ratelimit` mesh cluster must exist. */
export function rateLimitFilter(options: EdgeRateLimitOptions = {}): HttpFilter {
  return {
    name: "envoy.filters.http.ratelimit",
    typed_config: {
      "@type": "type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit",
      domain: options.domain ?? "taskmesh-edge",
      timeout: `${(options.timeoutMs ?? 250) / 1000}s`,
      // The service itself applies the configured policy when Redis is down;
      // an unreachable service lets calls through.
      failure_mode_deny: false,
      // Else a 429 becomes UNAVAILABLE, which clients retry at once (envoy#4660).
      rate_limited_as_resource_exhausted: true,
      enable_x_ratelimit_headers: "DRAFT_VERSION_03",
      rate_limit_service: { grpc_service: { envoy_grpc: { cluster_name: RATELIMIT_CLUSTER } }, transport_api_version: "V3" },
    },
  };
}

/** The ratelimit service as an xDS config source (over the same mTLS cluster as its checks). */
const RATELIMIT_XDS = {
  api_config_source: { api_type: "GRPC", transport_api_version: "V3", grpc_services: [{ envoy_grpc: { cluster_name: RATELIMIT_CLUSTER } }] },
  resource_api_version: "V3",
  initial_fetch_timeout: "1s",
} as const;

/**
 * The edge's own limits (scope `edge`): Envoy's local rate limit, its config
 * (descriptors, token buckets, the actions producing them) served by the
 * ratelimit service over ECDS and replaced live when the limits change. The
 * edge's listener waits for it at most a second at start; without an answer
 * it limits nothing until one comes. Before transcoding is done it would
 * see HTTP paths, so it goes where the global filter goes.
 */
export function edgeLimitsFilter(): HttpFilter {
  return {
    name: EDGE_LIMITS_FILTER,
    config_discovery: {
      config_source: RATELIMIT_XDS,
      default_config: { "@type": LOCAL_RATE_LIMIT_TYPE_URL, stat_prefix: EDGE_LIMITS_STAT_PREFIX },
      apply_default_config_without_warming: false,
      type_urls: [LOCAL_RATE_LIMIT_TYPE_URL],
    },
  };
}

/**
 * The edge's runtime layer from the ratelimit service (RTDS, over the same
 * mTLS cluster as its checks): `ratelimit.http_filter_enabled` is 0 while no
 * limit is configured, so the filter then asks nothing, and 100 once one is.
 * Until the first answer (or when the service is not up within a second of
 * the edge's start) the key is unset and the filter asks about every request.
 */
export function rateLimitRuntimeLayer(): RuntimeLayer {
  return {
    name: RUNTIME_LAYER,
    rtds_layer: {
      name: RUNTIME_LAYER,
      rtds_config: RATELIMIT_XDS,
    },
  };
}

/** Descriptors of every authenticated call: per subject, and per subject and method. */
export const SUBJECT_RATE_LIMITS: readonly RateLimit[] = [
  { actions: [EDGE_DESCRIPTOR_ACTIONS.subject] },
  { actions: [EDGE_DESCRIPTOR_ACTIONS.subject, EDGE_DESCRIPTOR_ACTIONS.method] },
];

/** Descriptors of token issue and refresh: per client address and method. */
export const ADDRESS_RATE_LIMITS: readonly RateLimit[] = [
  { actions: [EDGE_DESCRIPTOR_ACTIONS.remote_address, EDGE_DESCRIPTOR_ACTIONS.method] },
];
