import { isIP } from "node:net";
import { mkdirSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { CircuitBreakerThresholds, Cluster, ClusterLoadAssignment, Http2ProtocolOptions, LbPolicy, TransportSocket } from "./envoy-types.js";
import type { Topology } from "./topology.js";

/** HTTP/2 keepalive on every upstream connection: a dead peer is found within ~40 s (the kit's servers accept pings every 10 s). */
export const HTTP2_OPTIONS: Http2ProtocolOptions = { connection_keepalive: { interval: "30s", timeout: "10s" } };

/** An endpoint off loopback: an IP address or a host name (a compose service, a Kubernetes headless Service) and its port. */
export interface Endpoint {
  readonly address: string;
  readonly port: number;
}

/** How often a cluster of host names asks DNS again: a replica that joins gets calls within this long. */
export const DNS_REFRESH = "5s";

/** Options of {@link staticCluster}. */
export interface StaticClusterOptions {
  readonly name: string;
  /** One per replica: a port on 127.0.0.1, or an {@link Endpoint} (a host name stands for every address it resolves to). */
  readonly endpoints: readonly (number | Endpoint)[];
  readonly lbPolicy: LbPolicy;
  /** mTLS to the endpoints (a mesh cluster); plain h2c without it (the local app, the OTLP collector). */
  readonly tls?: TransportSocket;
  /** Active `grpc.health.v1` checks of this service name (the name the app registers, envoy#5275). */
  readonly healthService?: string;
  /** Outlier detection and limits for a mesh cluster. */
  readonly circuitBreakers?: Topology["defaults"]["circuitBreakers"];
  /**
   * The folder of endpoint files ({@link writeEndpoints}): the cluster reads
   * its endpoints from `<dir>/<name>.json` and follows every replacement of
   * it (EDS over a watched file), so replicas join and leave without a new
   * config; `endpoints` are then what the file is written with first.
   */
  readonly endpointsDir?: string;
}

/** An endpoint as given: a port on 127.0.0.1, or an address and port. */
function endpointOf(e: number | Endpoint): Endpoint {
  return typeof e === "number" ? { address: "127.0.0.1", port: e } : e;
}

/** The endpoints of cluster `name` on `endpoints` (ports on 127.0.0.1, or addresses). */
export function loadAssignment(name: string, endpoints: readonly (number | Endpoint)[]): ClusterLoadAssignment {
  return {
    cluster_name: name,
    endpoints: [{ lb_endpoints: endpoints.map(endpointOf).map(({ address, port }) => ({ endpoint: { address: { socket_address: { address, port_value: port } } } })) }],
  };
}

/** Where the endpoints of cluster `name` are in an endpoints folder. */
export function endpointsPath(dir: string, name: string): string {
  return join(dir, `${name}.json`);
}

/**
 * Writes the endpoints of cluster `name` into `dir` as Envoy's file-based
 * EDS reads them (a DiscoveryResponse holding one ClusterLoadAssignment),
 * replacing the file in one rename: every Envoy whose cluster reads it
 * (`endpointsDir`) takes the new endpoints at once, health-checking new ones
 * before they get calls.
 */
export function writeEndpoints(dir: string, name: string, endpoints: readonly (number | Endpoint)[], version: string): void {
  mkdirSync(dir, { recursive: true });
  const path = endpointsPath(dir, name);
  const response = {
    version_info: version,
    resources: [{ "@type": "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment", ...loadAssignment(name, endpoints) }],
  };
  writeFileSync(`${path}.tmp`, `${JSON.stringify(response, null, 2)}\n`);
  renameSync(`${path}.tmp`, path);
}

/** Seconds as a protobuf duration. */
export function seconds(ms: number): `${number}s` {
  return `${ms / 1000}s`;
}

/** Whether `address` is an IPv4 or IPv6 literal (else a host name, resolved by DNS). */
function isIp(address: string): boolean {
  return isIP(address) !== 0;
}

/**
 * A cluster of fixed endpoints (on 127.0.0.1 unless given) that speaks HTTP/2 (declared
 * explicitly, envoy#7925). A mesh cluster adds mTLS, active gRPC health
 * checks, outlier detection (gateway and local-origin failures count too,
 * since a trailers-only grpc-status is all outlier detection sees, envoy#8228)
 * and circuit breakers.
 */
export function staticCluster(options: StaticClusterOptions): Cluster {
  const breakers = options.circuitBreakers;
  const thresholds: CircuitBreakerThresholds[] | undefined = breakers && [{
    priority: "DEFAULT",
    max_connections: breakers.maxConnections,
    max_pending_requests: breakers.maxPendingRequests,
    max_requests: breakers.maxRequests,
    max_retries: breakers.maxRetries,
  }];
  // Host names: Envoy resolves them itself and keeps every address as a host, health-checked on its own.
  const dns = options.endpoints.some((e) => !isIp(endpointOf(e).address));
  if (dns && options.endpointsDir) throw new Error(`cluster ${options.name}: an endpoints file holds addresses, not host names`);
  return {
    name: options.name,
    type: options.endpointsDir ? "EDS" : dns ? "STRICT_DNS" : "STATIC",
    ...(dns ? { dns_lookup_family: "V4_PREFERRED" as const, dns_refresh_rate: DNS_REFRESH } : {}),
    connect_timeout: "1s",
    lb_policy: options.lbPolicy,
    typed_extension_protocol_options: {
      "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
        explicit_http_config: { http2_protocol_options: HTTP2_OPTIONS },
      },
    },
    ...(options.endpointsDir ? {
      // A replica left out of the file goes at once, healthy or not (by default Envoy keeps a healthy one until it fails its checks).
      ignore_health_on_host_removal: true,
      eds_cluster_config: {
        service_name: options.name,
        eds_config: { resource_api_version: "V3" as const, path_config_source: { path: endpointsPath(options.endpointsDir, options.name), watched_directory: { path: options.endpointsDir } } },
      },
    } : { load_assignment: loadAssignment(options.name, options.endpoints) }),
    ...(options.tls ? { transport_socket: options.tls } : {}),
    ...(options.healthService !== undefined ? {
      health_checks: [{
        timeout: "1s",
        interval: "2s",
        no_traffic_interval: "5s",
        unhealthy_threshold: 2,
        healthy_threshold: 1,
        grpc_health_check: { service_name: options.healthService },
      }],
    } : {}),
    ...(options.tls ? {
      outlier_detection: {
        consecutive_5xx: 5,
        consecutive_gateway_failure: 3,
        enforcing_consecutive_gateway_failure: 100,
        split_external_local_origin_errors: true,
        consecutive_local_origin_failure: 3,
        enforcing_consecutive_local_origin_failure: 100,
        interval: "2s",
        base_ejection_time: "10s",
        max_ejection_percent: 50,
      },
    } : {}),
    ...(thresholds ? { circuit_breakers: { thresholds } } : {}),
  };
}
