import type { Bootstrap, Cluster, HttpConnectionManager, HttpFilter, Listener, Rbac, RbacPolicy, Route, RouteConfiguration, VirtualHost } from "./envoy-types.js";
import { staticCluster, seconds, HTTP2_OPTIONS, type Endpoint } from "./clusters.js";
import { accessLog, otlpCluster, runtime, tracing, type AccessLogOptions } from "./observability.js";
import { serviceRoutes } from "./routes.js";
import { certPaths, downstreamTls, upstreamTls, type SdsPaths } from "./tls.js";
import { calleesOf, EDGE, healthServiceOf, identities, spiffeId, type Topology } from "./topology.js";

/** One service instance: its app and the ports of its sidecar. */
export interface MeshInstance {
  /** e.g. `coordinator-0`. */
  readonly name: string;
  /** The service it runs, a key of the topology's `services`. */
  readonly service: string;
  /** The app's own port on 127.0.0.1 (loopback only). */
  readonly appPort: number;
  /** The sidecar's mTLS port: the instance's only externally reachable address. */
  readonly inboundPort: number;
  /** The sidecar's plain h2c port on 127.0.0.1 through which the app calls other services. */
  readonly outboundPort: number;
  /** The sidecar's admin port on 127.0.0.1. */
  readonly adminPort: number;
  /**
   * Where other Envoys reach its inbound port: an IP, or a host name that
   * resolves to every replica (a Kubernetes headless Service) or to this one
   * (a compose service). @default 127.0.0.1
   */
  readonly address?: string;
  /**
   * A plain (h2c) port on every address that answers only
   * `grpc.health.v1.Health/Check`, from the app: what a kubelet's gRPC probe
   * calls, since the app listens on loopback and the inbound port wants a
   * mesh certificate. None when absent.
   */
  readonly probePort?: number;
}

/** What every Envoy of one mesh shares. */
export interface MeshContext {
  readonly topology: Topology;
  /** The run's state directory (`.taskmesh/`): certificates are read from `<stateDir>/certs/`. */
  readonly stateDir: string;
  readonly instances: readonly MeshInstance[];
  /** The OTLP/gRPC collector's port on 127.0.0.1. */
  readonly otlpGrpcPort: number;
  /** The address the inbound listeners bind. @default 0.0.0.0 */
  readonly inboundAddress?: string;
  /** Which requests every Envoy logs. @default failed and slow ones (see accessLogFilter) */
  readonly accessLog?: AccessLogOptions;
  /** The OTLP/gRPC collector's host (an IP or a host name). @default 127.0.0.1 */
  readonly otlpAddress?: string;
  /**
   * Peers inside the mesh, as CIDRs: their x-request-id (the tracing
   * decision) and x-envoy-force-trace are honoured. @default ["127.0.0.0/8"]
   * (every peer on loopback, as under `up`)
   */
  readonly internalCidrs?: readonly string[];
  /** Where each identity's SDS files are. @default certPaths(stateDir, identity), as `taskmesh certs` lays them out */
  readonly sdsPaths?: (identity: string) => SdsPaths;
  /**
   * The folder of the mesh clusters' endpoint files (`up`: replicas join and
   * leave live, see {@link meshEndpoints}); without it each cluster lists
   * its endpoints inline (containers reach replicas by host name instead).
   */
  readonly endpointsDir?: string;
}

/** The endpoints of `target`'s mesh cluster: each replica's inbound listener. */
export function meshEndpoints(instances: readonly MeshInstance[], target: string): Array<number | Endpoint> {
  return instances.filter((i) => i.service === target).map((i) => (i.address ? { address: i.address, port: i.inboundPort } : i.inboundPort));
}

/**
 * Addresses a sidecar treats as inside the mesh (Envoy has none by default):
 * their x-request-id (which carries the tracing decision) and
 * x-envoy-force-trace are honoured. Under `up` every peer is on loopback.
 */
function meshInternal(ctx: MeshContext): { cidr_ranges: { address_prefix: string; prefix_len: number }[] } {
  return {
    cidr_ranges: (ctx.internalCidrs ?? ["127.0.0.0/8"]).map((cidr) => {
      const [address_prefix = "", bits = ""] = cidr.split("/");
      return { address_prefix, prefix_len: Number(bits) };
    }),
  };
}

/** The SDS files of `identity` in this mesh. */
export function sdsPathsOf(ctx: MeshContext, identity: string): SdsPaths {
  return ctx.sdsPaths ? ctx.sdsPaths(identity) : certPaths(ctx.stateDir, identity);
}

/** The cluster of the local app behind a sidecar. */
export const LOCAL_APP_CLUSTER = "local_app";
/** Every sidecar lets every mesh identity call this prefix: the active health checks of other Envoys. */
export const HEALTH_PREFIX = "/grpc.health.v1.Health/";

/** The mesh cluster of `target` as seen by `identity`: all its replicas, mTLS with `target`'s SAN checked. */
export function meshCluster(ctx: MeshContext, identity: string, target: string): Cluster {
  const t = ctx.topology;
  const spec = t.services[target];
  if (!spec) throw new Error(`unknown service ${target}`);
  return staticCluster({
    name: target,
    endpoints: meshEndpoints(ctx.instances, target),
    ...(ctx.endpointsDir ? { endpointsDir: ctx.endpointsDir } : {}),
    lbPolicy: spec.lbPolicy,
    tls: upstreamTls(ctx.stateDir, identity, spiffeId(t, target), sdsPathsOf(ctx, identity)),
    healthService: healthServiceOf(t, target),
    circuitBreakers: t.defaults.circuitBreakers,
  });
}

/** The inbound RBAC: the topology's callers by SPIFFE ID (the peer certificate's URI SAN, envoy#7836), and health checks from any mesh identity. */
export function inboundRbac(t: Topology, service: string): Rbac {
  const principal = (name: string) => ({ authenticated: { principal_name: { exact: spiffeId(t, name) } } });
  const policies: Record<string, RbacPolicy> = {
    "mesh-health-checks": { permissions: [{ url_path: { path: { prefix: HEALTH_PREFIX } } }], principals: identities(t).map(principal) },
  };
  const callers = t.services[service]?.callers ?? [];
  if (callers.length > 0) policies.callers = { permissions: [{ any: true }], principals: callers.map(principal) };
  return { "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC", rules: { action: "ALLOW", policies } };
}

const ROUTER: HttpFilter = { name: "envoy.filters.http.router", typed_config: { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" } };

/** An HTTP connection manager with the mesh's tracing and JSON access log (of failed and slow requests by default). */
export function connectionManager(options: {
  statPrefix: string;
  serviceName: string;
  codec: HttpConnectionManager["codec_type"];
  routes: Route[];
  filters: HttpFilter[];
  extra?: Partial<HttpConnectionManager>;
  virtualHost?: Partial<VirtualHost>;
  /** More of the route configuration (its name and virtual host come from the options above). */
  routeConfig?: Omit<Partial<RouteConfiguration>, "name" | "virtual_hosts">;
  /** Requests without a tracing decision that start a trace, in percent: the edge's sampling rate; 0 for sidecars. @default 0 */
  samplingPercent?: number;
  /** A span of its own for each call upstream (see {@link tracing}). @default true */
  upstreamSpans?: boolean;
  /** Which requests it logs. @default failed and slow ones */
  accessLog?: AccessLogOptions;
}): HttpConnectionManager {
  return {
    "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
    stat_prefix: options.statPrefix,
    codec_type: options.codec,
    http2_protocol_options: HTTP2_OPTIONS,
    tracing: tracing(options.serviceName, options.samplingPercent ?? 0, options.upstreamSpans ?? true),
    access_log: accessLog(options.statPrefix, options.accessLog),
    ...options.extra,
    route_config: { name: options.statPrefix, virtual_hosts: [{ name: options.statPrefix, domains: ["*"], routes: options.routes, ...options.virtualHost }], ...options.routeConfig },
    http_filters: [...options.filters, ROUTER],
  };
}

/** Outbound routes of `identity` (a service or the edge): by gRPC service prefix to each service it may call. */
export function outboundRoutes(t: Topology, identity: string): Route[] {
  return calleesOf(t, identity).flatMap((target) =>
    Object.keys(t.services[target]!.grpc).flatMap((g) => serviceRoutes(t, target, g, target)));
}

/**
 * The sidecar of one instance: an inbound mTLS listener (client certificate
 * required, RBAC by caller identity) in front of the app on loopback, an
 * outbound h2c listener on loopback that routes the app's calls by gRPC
 * service prefix to mesh clusters of every replica, and admin on loopback.
 */
export function sidecarConfig(ctx: MeshContext, instance: MeshInstance): Bootstrap {
  const t = ctx.topology;
  if (instance.service === EDGE || !t.services[instance.service]) throw new Error(`${instance.name}: unknown service ${instance.service}`);
  const serviceName = `${instance.name}-sidecar`;
  const inbound: Listener = {
    name: "inbound",
    address: { socket_address: { address: ctx.inboundAddress ?? "0.0.0.0", port_value: instance.inboundPort } },
    filter_chains: [{
      transport_socket: downstreamTls(ctx.stateDir, instance.service, sdsPathsOf(ctx, instance.service)),
      filters: [{
        name: "envoy.filters.network.http_connection_manager",
        typed_config: connectionManager({
          statPrefix: "inbound",
          serviceName,
          codec: "HTTP2",
          accessLog: ctx.accessLog,
          upstreamSpans: false,
          // The app learns its caller's SPIFFE ID from x-forwarded-client-cert (set here, never taken from the peer).
          extra: { forward_client_cert_details: "SANITIZE_SET", set_current_client_cert_details: { uri: true }, internal_address_config: meshInternal(ctx) },
          routes: [{
            name: "local-app",
            match: { prefix: "/" },
            // The caller's sidecar bounds unary calls; here only grpc-timeout and the idle timeout apply.
            route: { cluster: LOCAL_APP_CLUSTER, timeout: "0s", idle_timeout: seconds(t.defaults.streamIdleTimeout), max_stream_duration: { grpc_timeout_header_max: "0s" } },
          }],
          filters: [{ name: "envoy.filters.http.rbac", typed_config: inboundRbac(t, instance.service) }],
        }),
      }],
    }],
  };
  const outbound: Listener = {
    name: "outbound",
    address: { socket_address: { address: "127.0.0.1", port_value: instance.outboundPort } },
    filter_chains: [{
      filters: [{
        name: "envoy.filters.network.http_connection_manager",
        typed_config: connectionManager({
          statPrefix: "outbound", serviceName, codec: "HTTP2", routes: outboundRoutes(t, instance.service), filters: [],
          accessLog: ctx.accessLog,
          // The app is the peer (no X-Forwarded-For), on loopback: internal, so its x-envoy-force-trace counts.
          extra: { use_remote_address: true, internal_address_config: meshInternal(ctx) },
        }),
      }],
    }],
  };
  return {
    node: { id: instance.name, cluster: instance.service },
    admin: { address: { socket_address: { address: "127.0.0.1", port_value: instance.adminPort } } },
    layered_runtime: runtime(),
    static_resources: {
      listeners: [inbound, outbound, ...(instance.probePort !== undefined ? [probeListener(ctx, instance.probePort, serviceName)] : [])],
      clusters: [
        staticCluster({ name: LOCAL_APP_CLUSTER, endpoints: [instance.appPort], lbPolicy: "ROUND_ROBIN" }),
        ...calleesOf(t, instance.service).map((target) => meshCluster(ctx, instance.service, target)),
        otlpCluster(ctx.otlpGrpcPort, ctx.otlpAddress),
      ],
    },
  };
}

/** The one method the probe listener passes to the app. */
export const PROBE_PATH = "/grpc.health.v1.Health/Check";

/**
 * The probe listener: plain h2c on every address, `grpc.health.v1.Health/Check`
 * to the app (which says NOT_SERVING until its dependencies are ready and
 * from the start of a shutdown), anything else 404. Health answers carry
 * nothing a caller could use, so it needs no certificate.
 */
function probeListener(ctx: MeshContext, port: number, serviceName: string): Listener {
  return {
    name: "probe",
    address: { socket_address: { address: "0.0.0.0", port_value: port } },
    filter_chains: [{
      filters: [{
        name: "envoy.filters.network.http_connection_manager",
        typed_config: connectionManager({
          statPrefix: "probe", serviceName, codec: "HTTP2", filters: [], accessLog: ctx.accessLog,
          routes: [
            { name: "health-check", match: { path: PROBE_PATH }, route: { cluster: LOCAL_APP_CLUSTER, timeout: "5s" } },
            { name: "not-a-probe", match: { prefix: "/" }, direct_response: { status: 404 } },
          ],
        }),
      }],
    }],
  };
}
