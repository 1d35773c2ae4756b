/**
 * The subset of Envoy's v3 API that the mesh generator writes, as typed
 * objects (field names exactly as Envoy's protos spell them, so the objects
 * serialise to YAML unchanged). Durations are protobuf JSON strings ("15s").
 * Only fields the generator sets are declared; see envoyproxy.io for the rest.
 */

/** A protobuf `Duration` in JSON form, e.g. `"1.5s"`. */
export type Duration = `${number}s`;

/** Any filter or extension config: `@type` names its proto message. */
export interface TypedConfig {
  readonly "@type": string;
  readonly [field: string]: unknown;
}

export interface SocketAddress {
  readonly socket_address: { readonly address: string; readonly port_value: number };
}

export interface StringMatcher {
  readonly exact?: string;
  readonly prefix?: string;
  readonly safe_regex?: { readonly regex: string };
}

// --- Bootstrap ------------------------------------------------------------

export interface Bootstrap {
  readonly node: { readonly id: string; readonly cluster: string };
  readonly admin: { readonly address: SocketAddress };
  readonly layered_runtime?: { readonly layers: readonly RuntimeLayer[] };
  readonly static_resources: { readonly listeners: readonly Listener[]; readonly clusters: readonly Cluster[] };
}

/** A runtime layer: fixed values, values a runtime discovery service (RTDS) pushes, or the admin's `/runtime_modify`. */
export type RuntimeLayer =
  | { readonly name: string; readonly static_layer: Readonly<Record<string, number | string | boolean>> }
  | { readonly name: string; readonly rtds_layer: { readonly name: string; readonly rtds_config: GrpcConfigSource } }
  | { readonly name: string; readonly admin_layer: Record<string, never> };

/** An xDS subscription over gRPC to a cluster; Envoy starts without it after `initial_fetch_timeout`. */
export interface GrpcConfigSource {
  readonly api_config_source: {
    readonly api_type: "GRPC";
    readonly transport_api_version: "V3";
    readonly grpc_services: ReadonlyArray<{ readonly envoy_grpc: { readonly cluster_name: string } }>;
  };
  readonly resource_api_version: "V3";
  readonly initial_fetch_timeout?: string;
}

// --- Listeners and the HTTP connection manager ------------------------------

export interface Listener {
  readonly name: string;
  readonly stat_prefix?: string;
  readonly address: SocketAddress;
  readonly filter_chains: readonly FilterChain[];
}

export interface FilterChain {
  readonly filters: readonly NetworkFilter[];
  readonly transport_socket?: TransportSocket;
}

export interface NetworkFilter {
  readonly name: "envoy.filters.network.http_connection_manager";
  readonly typed_config: HttpConnectionManager;
}

export interface HttpConnectionManager extends TypedConfig {
  readonly "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
  readonly stat_prefix: string;
  readonly codec_type: "AUTO" | "HTTP1" | "HTTP2";
  readonly http2_protocol_options?: Http2ProtocolOptions;
  readonly stream_idle_timeout?: Duration;
  readonly use_remote_address?: boolean;
  readonly forward_client_cert_details?: "SANITIZE" | "FORWARD_ONLY" | "APPEND_FORWARD" | "SANITIZE_SET" | "ALWAYS_FORWARD_ONLY";
  readonly set_current_client_cert_details?: { readonly uri?: boolean; readonly subject?: boolean };
  readonly tracing?: Tracing;
  readonly access_log?: readonly AccessLog[];
  readonly route_config: RouteConfiguration;
  readonly http_filters: readonly HttpFilter[];
}

export interface Http2ProtocolOptions {
  readonly max_concurrent_streams?: number;
  readonly connection_keepalive?: { readonly interval: Duration; readonly timeout: Duration };
}

export type HttpFilter = {
  readonly name: string;
  readonly typed_config: TypedConfig;
} | {
  readonly name: string;
  /** The filter's config from an extension config discovery service (ECDS). */
  readonly config_discovery: {
    readonly config_source: object;
    readonly default_config: TypedConfig;
    readonly apply_default_config_without_warming?: boolean;
    readonly type_urls: readonly string[];
  };
};

export interface Tracing {
  readonly random_sampling?: { readonly value: number };
  readonly spawn_upstream_span?: boolean;
  readonly provider: { readonly name: "envoy.tracers.opentelemetry"; readonly typed_config: OpenTelemetryConfig };
}

export interface OpenTelemetryConfig extends TypedConfig {
  readonly "@type": "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig";
  readonly grpc_service: { readonly envoy_grpc: { readonly cluster_name: string }; readonly timeout?: Duration };
  readonly service_name: string;
}

export interface AccessLog {
  readonly name: "envoy.access_loggers.stdout";
  /** Which requests are logged; without one, every request. */
  readonly filter?: AccessLogFilter;
  readonly typed_config: TypedConfig & {
    readonly "@type": "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog";
    readonly log_format: { readonly json_format: Readonly<Record<string, string>> };
  };
}

/** A comparison whose value can be changed live through the runtime key. */
export interface AccessLogComparison {
  readonly op: "EQ" | "GE" | "LE";
  readonly value: { readonly default_value: number; readonly runtime_key: string };
}

/** `envoy.config.accesslog.v3.AccessLogFilter`: exactly one field set. */
export type AccessLogFilter =
  | { readonly or_filter: { readonly filters: readonly AccessLogFilter[] } }
  | { readonly and_filter: { readonly filters: readonly AccessLogFilter[] } }
  | { readonly status_code_filter: { readonly comparison: AccessLogComparison } }
  | { readonly duration_filter: { readonly comparison: AccessLogComparison } }
  /** No flags listed: any response flag (UH, UF, URX, DC, …). */
  | { readonly response_flag_filter: { readonly flags?: readonly string[] } }
  | { readonly grpc_status_filter: { readonly statuses: readonly string[]; readonly exclude?: boolean } }
  | { readonly header_filter: { readonly header: { readonly name: string; readonly string_match: StringMatcher } } };

// --- Routes -----------------------------------------------------------------

export interface RouteConfiguration {
  readonly name: string;
  readonly virtual_hosts: readonly VirtualHost[];
  /** The largest `direct_response` body, read at load (Envoy's default is 4 KiB). */
  readonly max_direct_response_body_size_bytes?: number;
}

export interface VirtualHost {
  readonly name: string;
  readonly domains: readonly string[];
  readonly routes: readonly Route[];
  readonly typed_per_filter_config?: Readonly<Record<string, TypedConfig>>;
  readonly rate_limits?: readonly RateLimit[];
}

/** One rate-limit descriptor: the entries its actions produce (none when a header is absent). */
export interface RateLimit {
  readonly actions: readonly (
    | { readonly request_headers: { readonly header_name: string; readonly descriptor_key: string } }
    | { readonly remote_address: Record<string, never> }
  )[];
}

export interface RouteMatch {
  readonly prefix?: string;
  readonly path?: string;
}

export interface Route {
  readonly name?: string;
  readonly match: RouteMatch;
  readonly route?: RouteAction;
  /** An answer from Envoy itself (the edge's catch-all, so CORS preflights find a policy; the API docs' files). */
  readonly direct_response?: { readonly status: number; readonly body?: { readonly inline_string: string } | { readonly filename: string } };
  readonly response_headers_to_add?: readonly HeaderValueOption[];
}

/** A header to set on a response; `OVERWRITE_IF_EXISTS_OR_ADD` replaces one Envoy set itself (a local reply's content-type). */
export interface HeaderValueOption {
  readonly header: { readonly key: string; readonly value: string };
  readonly append_action?: "APPEND_IF_EXISTS_OR_ADD" | "ADD_IF_ABSENT" | "OVERWRITE_IF_EXISTS_OR_ADD";
}

export interface RouteAction {
  readonly cluster: string;
  /** The upstream response timeout; `0s` for streams. */
  readonly timeout: Duration;
  readonly idle_timeout?: Duration;
  readonly max_stream_duration?: { readonly grpc_timeout_header_max?: Duration; readonly max_stream_duration?: Duration };
  readonly retry_policy?: RetryPolicy;
  readonly rate_limits?: readonly RateLimit[];
}

export interface RetryPolicy {
  readonly retry_on: string;
  readonly num_retries: number;
  readonly per_try_timeout?: Duration;
  readonly retry_back_off?: { readonly base_interval: Duration; readonly max_interval?: Duration };
  readonly retry_host_predicate?: readonly { readonly name: string; readonly typed_config: TypedConfig }[];
  readonly host_selection_retry_max_attempts?: number;
}

// --- Clusters ---------------------------------------------------------------

export type LbPolicy = "ROUND_ROBIN" | "LEAST_REQUEST" | "RANDOM";

export interface Cluster {
  readonly name: string;
  /**
   * STATIC for IP endpoints; STRICT_DNS when an endpoint is a host name (every address it resolves to is a host); EDS
   * when the endpoints come from a watched file (`eds_cluster_config`).
   */
  readonly type: "STATIC" | "STRICT_DNS" | "EDS";
  readonly dns_lookup_family?: "V4_ONLY" | "V4_PREFERRED" | "AUTO";
  readonly dns_refresh_rate?: Duration;
  readonly connect_timeout: Duration;
  readonly lb_policy: LbPolicy;
  readonly typed_extension_protocol_options: {
    readonly "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": HttpProtocolOptions;
  };
  readonly load_assignment?: ClusterLoadAssignment;
  /** Drop a host the EDS file no longer lists at once, even while it passes its health checks. */
  readonly ignore_health_on_host_removal?: boolean;
  /** EDS from a file Envoy watches: replaced (by a rename into `watched_directory`), its endpoints apply at once. */
  readonly eds_cluster_config?: {
    readonly service_name: string;
    readonly eds_config: { readonly resource_api_version: "V3"; readonly path_config_source: { readonly path: string; readonly watched_directory: { readonly path: string } } };
  };
  readonly transport_socket?: TransportSocket;
  readonly health_checks?: readonly HealthCheck[];
  readonly outlier_detection?: OutlierDetection;
  readonly circuit_breakers?: { readonly thresholds: readonly CircuitBreakerThresholds[] };
}

/** A cluster's endpoints (inline in a STATIC or STRICT_DNS cluster, or a resource of an EDS file). */
export interface ClusterLoadAssignment {
  readonly cluster_name: string;
  readonly endpoints: readonly { readonly lb_endpoints: readonly { readonly endpoint: { readonly address: SocketAddress } }[] }[];
}

/** HTTP/2 declared explicitly: gRPC clusters without it fail with "protocol error" (envoy#7925). */
export interface HttpProtocolOptions extends TypedConfig {
  readonly "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
  readonly explicit_http_config: { readonly http2_protocol_options: Http2ProtocolOptions };
}

export interface HealthCheck {
  readonly timeout: Duration;
  readonly interval: Duration;
  readonly no_traffic_interval?: Duration;
  readonly unhealthy_threshold: number;
  readonly healthy_threshold: number;
  readonly grpc_health_check: { readonly service_name: string };
}

export interface OutlierDetection {
  readonly consecutive_5xx?: number;
  readonly consecutive_gateway_failure?: number;
  readonly enforcing_consecutive_gateway_failure?: number;
  readonly split_external_local_origin_errors?: boolean;
  readonly consecutive_local_origin_failure?: number;
  readonly enforcing_consecutive_local_origin_failure?: number;
  readonly interval?: Duration;
  readonly base_ejection_time?: Duration;
  readonly max_ejection_percent?: number;
}

export interface CircuitBreakerThresholds {
  readonly priority: "DEFAULT" | "HIGH";
  readonly max_connections: number;
  readonly max_pending_requests: number;
  readonly max_requests: number;
  readonly max_retries: number;
}

// --- TLS and SDS --------------------------------------------------------------

export interface TransportSocket {
  readonly name: "envoy.transport_sockets.tls";
  readonly typed_config: DownstreamTlsContext | UpstreamTlsContext;
}

/** A secret read from a file that Envoy watches (path-based SDS), so rotation needs no restart. */
export interface SdsSecretConfig {
  readonly name: string;
  readonly sds_config: {
    readonly path_config_source: { readonly path: string; readonly watched_directory: { readonly path: string } };
    readonly resource_api_version: "V3";
  };
}

export interface CommonTlsContext {
  readonly alpn_protocols: readonly string[];
  readonly tls_certificate_sds_secret_configs: readonly SdsSecretConfig[];
  readonly validation_context_sds_secret_config?: SdsSecretConfig;
  readonly combined_validation_context?: {
    readonly default_validation_context: {
      readonly match_typed_subject_alt_names: readonly { readonly san_type: "URI" | "DNS"; readonly matcher: StringMatcher }[];
    };
    readonly validation_context_sds_secret_config: SdsSecretConfig;
  };
}

export interface DownstreamTlsContext extends TypedConfig {
  readonly "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext";
  readonly require_client_certificate: boolean;
  readonly common_tls_context: CommonTlsContext;
}

export interface UpstreamTlsContext extends TypedConfig {
  readonly "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext";
  readonly common_tls_context: CommonTlsContext;
}

// --- RBAC -----------------------------------------------------------------------

export interface RbacPolicy {
  readonly permissions: readonly ({ readonly any: true } | { readonly url_path: { readonly path: StringMatcher } })[];
  readonly principals: readonly { readonly authenticated: { readonly principal_name: StringMatcher } }[];
}

export interface Rbac extends TypedConfig {
  readonly "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC";
  readonly rules: { readonly action: "ALLOW" | "DENY"; readonly policies: Readonly<Record<string, RbacPolicy>> };
}
