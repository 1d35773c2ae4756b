import { Runtime, type RuntimeDiscoveryServiceService } from "@taskmesh/contracts/gen/envoy/service/runtime/v3/rtds";
import type { ServiceHandlers } from "@taskmesh/kit";
import { DiscoverySource, deltaNotServed, discoveryFetch, discoveryStream } from "./discovery.js";
import type { LimitSet } from "./limits.js";
import { FILTER_ENABLED_KEY, RUNTIME_LAYER, RUNTIME_TYPE_URL } from "@taskmesh/contracts/ratelimit";

export { FILTER_ENABLED_KEY, RUNTIME_LAYER, RUNTIME_TYPE_URL } from "@taskmesh/contracts/ratelimit";

/**
 * The runtime layer for a limit set: the edge's rate-limit filter asks this
 * service about every request while any global limit is configured, and
 * about none while there is none (nothing it counts could apply, so the
 * call would only cost a round trip through two Envoys and this service;
 * edge limits are counted by the edge itself).
 */
export function runtimeLayer(limits: LimitSet): Record<string, number> {
  return { [FILTER_ENABLED_KEY]: limits.global.length > 0 ? 100 : 0 };
}

/** The runtime layer of the current limit set (RTDS's one resource), and its version. */
export class RuntimeLayerSource extends DiscoverySource {
  constructor(limits: LimitSet) {
    super(RUNTIME_TYPE_URL, (set) => [{ name: RUNTIME_LAYER, value: Runtime.encode({ name: RUNTIME_LAYER, layer: runtimeLayer(set) }).finish() }], limits);
  }
}

/**
 * `envoy.service.runtime.v3.RuntimeDiscoveryService` (RTDS), state of the
 * world (see {@link discoveryStream}); nothing is answered before `loaded`
 * resolves. Delta xDS is not served.
 */
export function runtimeDiscoveryHandlers(source: RuntimeLayerSource, loaded: Promise<unknown> = Promise.resolve()): ServiceHandlers<typeof RuntimeDiscoveryServiceService> {
  return { streamRuntime: discoveryStream(source, loaded), deltaRuntime: deltaNotServed, fetchRuntime: discoveryFetch(source, loaded) };
}
