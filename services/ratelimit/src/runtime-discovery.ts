import { status } from "@grpc/grpc-js";
import type { DiscoveryRequest, DiscoveryResponse } from "../../../gen/envoy/service/discovery/v3/discovery.js";
import { Runtime, type RuntimeDiscoveryServiceService } from "../../../gen/envoy/service/runtime/v3/rtds.js";
import { MeshError, invalidArgument, type Send, type ServiceHandlers } from "../../kit/src/index.js";
import type { LimitSet } from "./limits.js";
import { FILTER_ENABLED_KEY, RUNTIME_LAYER, RUNTIME_TYPE_URL } from "./runtime-names.js";

export { FILTER_ENABLED_KEY, RUNTIME_LAYER, RUNTIME_TYPE_URL } from "./runtime-names.js";

/**
 * The runtime layer for a limit set: the edge's rate-limit filter asks this
 * service about every request while any limit is configured, and about none
 * while the set is empty (nothing could be limited, so the call would only
 * cost a round trip through two Envoys and this service).
 */
export function runtimeLayer(limits: LimitSet): Record<string, number> {
  return { [FILTER_ENABLED_KEY]: limits.size > 0 ? 100 : 0 };
}

/** The current layer and its version; tells its subscribers when either changes. */
export class RuntimeLayerSource {
  private layer: Record<string, number>;
  private version = 1;
  private readonly listeners = new Set<() => void>();

  constructor(limits: LimitSet) {
    this.layer = runtimeLayer(limits);
  }

  /** Takes the layer of a new limit set; a new version only when the layer differs. */
  update(limits: LimitSet): void {
    const next = runtimeLayer(limits);
    if (JSON.stringify(next) === JSON.stringify(this.layer)) return;
    this.layer = next;
    this.version++;
    for (const listener of this.listeners) listener();
  }

  /** The layer now, with its version. */
  current(): { readonly version: string; readonly layer: Readonly<Record<string, number>> } {
    return { version: String(this.version), layer: this.layer };
  }

  /** Calls `listener` after each change; returns the unsubscribe. */
  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}

/** A response carrying the layer (when the request names it, or names none) as of now. */
function response(source: RuntimeLayerSource, names: readonly string[], nonce: string): DiscoveryResponse {
  const { version, layer } = source.current();
  const wanted = names.length === 0 || names.includes(RUNTIME_LAYER);
  return {
    versionInfo: version,
    resources: wanted ? [{ typeUrl: RUNTIME_TYPE_URL, value: Buffer.from(Runtime.encode({ name: RUNTIME_LAYER, layer }).finish()) }] : [],
    canary: false,
    typeUrl: RUNTIME_TYPE_URL,
    nonce,
    controlPlane: undefined,
  };
}

function checkType(request: DiscoveryRequest): void {
  if (request.typeUrl !== "" && request.typeUrl !== RUNTIME_TYPE_URL) {
    throw invalidArgument([{ field: "type_url", description: `must be ${RUNTIME_TYPE_URL}` }]);
  }
}

/**
 * `envoy.service.runtime.v3.RuntimeDiscoveryService` (RTDS), state of the
 * world: a stream gets the layer on its first request and again after each
 * change; an ACK or a NACK (the request carrying the last response's nonce)
 * gets nothing until the layer changes. Nothing is answered before `loaded`
 * resolves (the limits in config are known): a layer from the empty set
 * meanwhile would switch the edge's limits off. Delta xDS is not served.
 */
export function runtimeDiscoveryHandlers(source: RuntimeLayerSource, loaded: Promise<unknown> = Promise.resolve()): ServiceHandlers<typeof RuntimeDiscoveryServiceService> {
  return {
    async streamRuntime(requests, send: Send<DiscoveryResponse>, ctx) {
      await loaded;
      let names: readonly string[] | undefined;
      let sentVersion = "";
      let nonces = 0;
      // Sends run one after another, so responses leave in version order.
      let sending = Promise.resolve();
      const push = (): void => {
        sending = sending.then(async () => {
          if (names === undefined || source.current().version === sentVersion) return;
          const next = response(source, names, String(++nonces));
          sentVersion = next.versionInfo;
          await send(next);
        });
      };
      const unsubscribe = source.subscribe(push);
      try {
        for await (const request of requests) {
          checkType(request);
          if (request.errorDetail) ctx.log.warn({ version: request.versionInfo, nonce: request.responseNonce, error: request.errorDetail.message }, "an Envoy refused the runtime layer");
          const renamed = names !== undefined && request.resourceNames.join("\n") !== names.join("\n");
          names = request.resourceNames;
          // A first request, or a new subscription, gets the layer; an ACK or NACK waits for the next change.
          if (request.responseNonce === "" || renamed) sentVersion = "";
          push();
        }
        await sending;
      } finally {
        unsubscribe();
      }
    },
    async deltaRuntime() {
      throw new MeshError({ code: status.UNIMPLEMENTED, reason: "VAL_UNSUPPORTED_PROTOCOL", message: "delta xDS is not served: use StreamRuntime (state of the world)" });
    },
    async fetchRuntime(request) {
      checkType(request);
      await loaded;
      return response(source, request.resourceNames, "");
    },
  };
}
