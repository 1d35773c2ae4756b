import type { Route, RouteAction } from "./envoy-types.js";
import { seconds } from "./clusters.js";
import { methodPolicy, type MethodPolicy, type Topology } from "./topology.js";

/** The route action of one policy: timeouts honouring `grpc-timeout`, retries only when the policy says the method is safe. */
export function routeAction(t: Topology, cluster: string, policy: MethodPolicy): RouteAction {
  if (policy.stream) {
    // No route timeout for streams (the 15 s default would cut them, envoy#35812):
    // a client's grpc-timeout still bounds the stream, and an idle one ends.
    return { cluster, timeout: "0s", idle_timeout: seconds(t.defaults.streamIdleTimeout), max_stream_duration: { grpc_timeout_header_max: "0s" } };
  }
  const timeout = seconds(policy.timeoutMs);
  const retry = t.defaults.retry;
  return {
    cluster,
    timeout,
    // A shorter grpc-timeout from the caller wins; a longer one is capped at the route's.
    max_stream_duration: { grpc_timeout_header_max: timeout },
    ...(policy.retry ? {
      retry_policy: {
        retry_on: retry.on,
        num_retries: retry.numRetries,
        ...(retry.perTryTimeout !== undefined ? { per_try_timeout: seconds(Math.min(retry.perTryTimeout, policy.timeoutMs)) } : {}),
        retry_back_off: { base_interval: "0.025s", max_interval: "0.25s" },
        // A retry goes to another replica when there is one.
        retry_host_predicate: [{
          name: "envoy.retry_host_predicates.previous_hosts",
          typed_config: { "@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate" },
        }],
        host_selection_retry_max_attempts: 3,
      },
    } : {}),
  };
}

/**
 * Routes of one gRPC service of `target` towards `cluster`: one exact-path
 * route per method whose policy differs from the service's default (or per
 * listed method when `only` is given), then the service prefix.
 */
export function serviceRoutes(t: Topology, target: string, grpcService: string, cluster: string, only?: readonly string[], streams: readonly string[] = []): Route[] {
  const declared = Object.keys(t.services[target]?.grpc[grpcService]?.methods ?? {});
  const policyOf = (method?: string): MethodPolicy => {
    const p = methodPolicy(t, target, grpcService, method);
    return method && streams.includes(method) ? { retry: false, stream: true, timeoutMs: 0 } : p;
  };
  const base = policyOf();
  const differs = (m: string): boolean => JSON.stringify(policyOf(m)) !== JSON.stringify(base);
  const methods = only ?? [...new Set([...declared, ...streams])].filter(differs);
  const routes: Route[] = methods.map((m) => ({
    name: `${grpcService}/${m}`,
    match: { path: `/${grpcService}/${m}` },
    route: routeAction(t, cluster, policyOf(m)),
  }));
  if (!only) routes.push({ name: grpcService, match: { prefix: `/${grpcService}/` }, route: routeAction(t, cluster, base) });
  return routes;
}
