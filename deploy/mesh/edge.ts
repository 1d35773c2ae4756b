import type { Bootstrap, HttpFilter, Route, TypedConfig } from "./envoy-types.js";
import { meshCluster, connectionManager, type MeshContext } from "./sidecar.js";
import { otlpCluster } from "./observability.js";
import { serviceRoutes } from "./routes.js";
import { EDGE, ownerOf, type Topology } from "./topology.js";

/** Where the edge listens and how it reaches the outside world's tools. */
export interface EdgeOptions {
  /** The edge's gRPC/gRPC-Web/HTTP-JSON port on 127.0.0.1. @default 8080 */
  readonly port?: number;
  /** The edge's admin port on 127.0.0.1. @default 9901 */
  readonly adminPort?: number;
  /** The descriptor set `buf build` writes (`gen/descriptor.binpb`), as an absolute path. */
  readonly descriptorSetPath: string;
  /** Browser origins CORS allows (prefix match). @default http://localhost and http://127.0.0.1 */
  readonly corsOrigins?: readonly string[];
  /**
   * Insertion point for the identity issue: filters placed after CORS and
   * gRPC-Web and before transcoding (`envoy.filters.http.jwt_authn`, with
   * health, reflection and token issue exempt by its rules).
   */
  readonly authFilters?: readonly HttpFilter[];
  /**
   * Insertion point for the identity issue: filters placed just before the
   * router (`envoy.filters.http.ratelimit` with
   * `rate_limited_as_resource_exhausted: true`, else a 429 turns into a
   * retried UNAVAILABLE, envoy#4660). Their clusters go in `extraClusters`.
   */
  readonly rateLimitFilters?: readonly HttpFilter[];
  /** Clusters the hook filters need (the JWKS or ratelimit service). */
  readonly extraClusters?: Bootstrap["static_resources"]["clusters"];
}

/** Streaming methods of the well-known services the edge exposes without a topology entry. */
const KNOWN_STREAMS: Readonly<Record<string, readonly string[]>> = {
  "grpc.health.v1.Health": ["Watch"],
  "grpc.reflection.v1.ServerReflection": ["ServerReflectionInfo"],
  "grpc.reflection.v1alpha.ServerReflection": ["ServerReflectionInfo"],
};

/** The edge's routes: each exposed service (or its listed methods) to its target's cluster, then a catch-all 404 so CORS preflights find the policy. */
export function edgeRoutes(t: Topology): Route[] {
  const routes = t.edge.expose.flatMap((e) => {
    const target = e.target ?? ownerOf(t, e.service)!;
    return serviceRoutes(t, target, e.service, target, e.methods, KNOWN_STREAMS[e.service] ?? []);
  });
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
 * exposed service over mTLS with the `edge` identity, and hook points for
 * JWT authentication and rate limiting.
 */
export function edgeConfig(ctx: MeshContext, options: EdgeOptions): Bootstrap {
  const t = ctx.topology;
  const targets = [...new Set(t.edge.expose.map((e) => e.target ?? ownerOf(t, e.service)!))];
  const origins = options.corsOrigins ?? ["http://localhost", "http://127.0.0.1"];
  const cors: TypedConfig = {
    "@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy",
    allow_origin_string_match: origins.map((prefix) => ({ prefix })),
    allow_methods: "GET, PUT, DELETE, POST, OPTIONS",
    allow_headers: "authorization,content-type,x-grpc-web,x-user-agent,grpc-timeout,traceparent,tracestate",
    expose_headers: "grpc-status,grpc-message,grpc-status-details-bin",
    max_age: "1728000",
  };
  const filters: HttpFilter[] = [
    { name: "envoy.filters.http.cors", typed_config: { "@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors" } },
    { name: "envoy.filters.http.grpc_web", typed_config: { "@type": "type.googleapis.com/envoy.extensions.filters.http.grpc_web.v3.GrpcWeb" } },
    // Hook: JWT authentication (identity issue).
    ...(options.authFilters ?? []),
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
    // Hook: global rate limiting (identity issue).
    ...(options.rateLimitFilters ?? []),
  ];
  return {
    node: { id: EDGE, cluster: EDGE },
    admin: { address: { socket_address: { address: "127.0.0.1", port_value: options.adminPort ?? 9901 } } },
    static_resources: {
      listeners: [{
        name: "edge",
        address: { socket_address: { address: "127.0.0.1", port_value: options.port ?? 8080 } },
        filter_chains: [{
          filters: [{
            name: "envoy.filters.network.http_connection_manager",
            typed_config: connectionManager({
              statPrefix: "edge",
              serviceName: EDGE,
              codec: "AUTO",
              routes: edgeRoutes(t),
              filters,
              extra: { use_remote_address: true },
              virtualHost: { typed_per_filter_config: { "envoy.filters.http.cors": cors } },
            }),
          }],
        }],
      }],
      clusters: [...targets.map((target) => meshCluster(ctx, EDGE, target)), ...(options.extraClusters ?? []), otlpCluster(ctx.otlpGrpcPort)],
    },
  };
}
