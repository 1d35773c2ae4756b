import type { Bootstrap, Cluster, HttpFilter, Route, TypedConfig } from "./envoy-types.js";
import {
  ADDRESS_RATE_LIMITS, SUBJECT_RATE_LIMITS, TOKEN_PATHS, edgeLimitsFilter, jwksCluster, jwtFilter, rateLimitFilter, rateLimitRuntimeLayer, stripClaimsFilter,
  type EdgeAuthOptions, type EdgeRateLimitOptions,
} from "./edge-security.js";
import { consoleRoutes, type EdgeConsoleOptions } from "./console.js";
import { DOCS_BODY_LIMIT, docsRoutes, type EdgeDocsOptions } from "./docs.js";
import { edgeLocalReplies } from "./edge-errors.js";
import { meshCluster, connectionManager, type MeshContext } from "./sidecar.js";
import { otlpCluster, runtime } from "./observability.js";
import { routeAction, serviceRoutes } from "./routes.js";
import { EDGE, methodPolicy, ownerOf, type Topology } from "./topology.js";

/** Where the edge listens and how it reaches the outside world's tools. */
export interface EdgeOptions {
  /** The edge's gRPC/gRPC-Web/HTTP-JSON port. @default 8080 */
  readonly port?: number;
  /** The address the edge's listener binds: 0.0.0.0 in a container, where callers come from outside. @default 127.0.0.1 */
  readonly address?: string;
  /** The edge's admin port on 127.0.0.1. @default 9901 */
  readonly adminPort?: number;
  /** The descriptor set `buf build` writes (`packages/contracts/gen/descriptor.binpb`), as an absolute path. */
  readonly descriptorSetPath: string;
  /** Share of requests the edge starts a trace for, in percent (TASKMESH_TRACE_SAMPLING under up). @default 100 */
  readonly traceSamplingPercent?: number;
  /** Browser origins CORS allows (prefix match). @default http://localhost and http://127.0.0.1 */
  readonly corsOrigins?: readonly string[];
  /**
   * Access tokens: `jwt_authn` against identity's JWKS, on by default when
   * the topology has an `identity` service; `false` turns it off.
   */
  readonly auth?: EdgeAuthOptions | false;
  /**
   * Global rate limits through the `ratelimit` service, on by default when
   * the topology has one; `false` turns them off.
   */
  readonly rateLimit?: EdgeRateLimitOptions | false;
  /** The API docs (Swagger UI on the OpenAPI document) at `/docs`, open to all; none when absent. */
  readonly docs?: EdgeDocsOptions;
  /** The console at `/ui`; none when absent. */
  readonly console?: EdgeConsoleOptions;
}

/** Streaming methods of the well-known services the edge exposes without a topology entry. */
const KNOWN_STREAMS: Readonly<Record<string, readonly string[]>> = {
  "grpc.health.v1.Health": ["Watch"],
  "grpc.reflection.v1.ServerReflection": ["ServerReflectionInfo"],
  "grpc.reflection.v1alpha.ServerReflection": ["ServerReflectionInfo"],
};

/**
 * The edge's routes: the API docs and the console (when given), each exposed service (or its
 * listed methods) to its target's cluster, then a catch-all 404 so CORS
 * preflights find the policy.
 */
export function edgeRoutes(t: Topology, rateLimited = false, docs?: EdgeDocsOptions, ui?: EdgeConsoleOptions): Route[] {
  const routes: Route[] = [...(docs ? docsRoutes(docs) : []), ...(ui ? consoleRoutes(ui) : [])];
  if (rateLimited && t.services.identity) {
    // Token issue and refresh are limited per client address (no subject yet).
    for (const path of TOKEN_PATHS) {
      const [service, method] = path.slice(1).split("/") as [string, string];
      routes.push({ name: `${service}/${method}`, match: { path }, route: { ...routeAction(t, "identity", methodPolicy(t, "identity", service, method)), rate_limits: ADDRESS_RATE_LIMITS } });
    }
  }
  routes.push(...t.edge.expose.flatMap((e) => {
    const target = e.target ?? ownerOf(t, e.service)!;
    return serviceRoutes(t, target, e.service, target, e.methods, KNOWN_STREAMS[e.service] ?? []);
  }));
  routes.push({ name: "not-exposed", match: { prefix: "/" }, direct_response: { status: 404, body: { inline_string: "not exposed by the edge\n" } } });
  return routes;
}

/** The gRPC services the transcoder maps from HTTP/JSON: exposed taskmesh services (their `google.api.http` routes). */
function transcodedServices(t: Topology): string[] {
  return [...new Set(t.edge.expose.map((e) => e.service).filter((s) => ownerOf(t, s) !== undefined))];
}

/**
 * The edge Envoy: h2c gRPC, gRPC-Web and HTTP/JSON (transcoded from the
 * descriptor set) on one loopback port, CORS for browsers, routes to every
 * exposed service over mTLS with the `edge` identity, JWT authentication
 * and global rate limits (see edge-security.ts), and its own errors in the
 * mesh's shape, as JSON `google.rpc.Status` for HTTP callers (edge-errors.ts).
 */
export function edgeConfig(ctx: MeshContext, options: EdgeOptions): Bootstrap {
  const t = ctx.topology;
  const targets = [...new Set(t.edge.expose.map((e) => e.target ?? ownerOf(t, e.service)!))];
  const port = options.port ?? 8080;
  const auth = options.auth ?? (t.services.identity ? {} : false);
  const rateLimit = options.rateLimit ?? (t.services.ratelimit ? {} : false);
  const origins = options.corsOrigins ?? ["http://localhost", "http://127.0.0.1"];
  const cors: TypedConfig = {
    "@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy",
    allow_origin_string_match: origins.map((prefix) => ({ prefix })),
    allow_methods: "GET, PUT, DELETE, POST, OPTIONS",
    allow_headers: "authorization,content-type,x-grpc-web,x-user-agent,grpc-timeout,traceparent,tracestate",
    expose_headers: "grpc-status,grpc-message,grpc-status-details-bin,retry-after,x-ratelimit-limit,x-ratelimit-remaining,x-ratelimit-reset",
    max_age: "1728000",
  };
  const filters: HttpFilter[] = [
    { name: "envoy.filters.http.cors", typed_config: { "@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors" } },
    { name: "envoy.filters.http.grpc_web", typed_config: { "@type": "type.googleapis.com/envoy.extensions.filters.http.grpc_web.v3.GrpcWeb" } },
    ...(auth ? [stripClaimsFilter(), jwtFilter(port, auth)] : []),
    {
      name: "envoy.filters.http.grpc_json_transcoder",
      typed_config: {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.grpc_json_transcoder.v3.GrpcJsonTranscoder",
        proto_descriptor: options.descriptorSetPath,
        services: transcodedServices(t),
        convert_grpc_status: true,
        print_options: { add_whitespace: false, always_print_primitive_fields: true, always_print_enums_as_ints: false, preserve_proto_field_names: false },
      },
    },
    // After transcoding, so `method` is always the gRPC path.
    ...(rateLimit ? [edgeLimitsFilter(), rateLimitFilter(rateLimit)] : []),
  ];
  return {
    node: { id: EDGE, cluster: EDGE },
    admin: { address: { socket_address: { address: "127.0.0.1", port_value: options.adminPort ?? 9901 } } },
    layered_runtime: runtime(rateLimit ? [rateLimitRuntimeLayer()] : []),
    static_resources: {
      listeners: [{
        name: "edge",
        address: { socket_address: { address: options.address ?? "127.0.0.1", port_value: port } },
        filter_chains: [{
          filters: [{
            name: "envoy.filters.network.http_connection_manager",
            typed_config: connectionManager({
              statPrefix: "edge",
              serviceName: EDGE,
              samplingPercent: options.traceSamplingPercent ?? 100,
              accessLog: ctx.accessLog,
              codec: "AUTO",
              routes: edgeRoutes(t, rateLimit !== false, options.docs, options.console),
              filters,
              extra: { use_remote_address: true, local_reply_config: edgeLocalReplies() },
              virtualHost: { typed_per_filter_config: { "envoy.filters.http.cors": cors }, ...(rateLimit ? { rate_limits: SUBJECT_RATE_LIMITS } : {}) },
              ...(options.docs || options.console ? { routeConfig: { max_direct_response_body_size_bytes: DOCS_BODY_LIMIT } } : {}),
            }),
          }],
        }],
      }],
      clusters: [
        ...targets.map((target) => meshCluster(ctx, EDGE, target)),
        ...(rateLimit && !targets.includes("ratelimit") ? [meshCluster(ctx, EDGE, "ratelimit")] : []),
        ...(auth ? [jwksCluster(port)] : []),
        otlpCluster(ctx.otlpGrpcPort, ctx.otlpAddress),
      ] satisfies Cluster[],
    },
  };
}
