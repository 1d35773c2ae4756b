import { status } from "@grpc/grpc-js";
import type { DiscoveryRequest, DiscoveryResponse } from "@taskmesh/contracts/gen/envoy/service/discovery/v3/discovery";
import { MeshError, invalidArgument, type CallContext, type Send } from "@taskmesh/kit";
import type { LimitSet } from "./limits.js";

/** One xDS resource: its name and its encoded message (of the source's type). */
export interface Resource {
  readonly name: string;
  readonly value: Uint8Array;
}

/**
 * The resources of one xDS type made from the limit set, and their version:
 * a new version only when the encoded resources differ. Tells its
 * subscribers about each new version.
 */
export class DiscoverySource {
  private resources: readonly Resource[];
  private version = 1;
  private readonly listeners = new Set<() => void>();

  constructor(readonly typeUrl: string, private readonly build: (limits: LimitSet) => readonly Resource[], limits: LimitSet) {
    this.resources = build(limits);
  }

  /** Takes the resources of a new limit set; a new version only when they differ. */
  update(limits: LimitSet): void {
    const next = this.build(limits);
    if (sameResources(next, this.resources)) return;
    this.resources = next;
    this.version++;
    for (const listener of this.listeners) listener();
  }

  /** The resources now, with their version. */
  current(): { readonly version: string; readonly resources: readonly Resource[] } {
    return { version: String(this.version), resources: this.resources };
  }

  /** Calls `listener` after each change; returns the unsubscribe. */
  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}

function sameResources(a: readonly Resource[], b: readonly Resource[]): boolean {
  return a.length === b.length && a.every((r, i) => r.name === b[i]!.name && Buffer.from(r.value).equals(b[i]!.value));
}

/** A response carrying the resources the request names (all when it names none) as of now. */
function response(source: DiscoverySource, names: readonly string[], nonce: string): DiscoveryResponse {
  const { version, resources } = source.current();
  return {
    versionInfo: version,
    resources: resources.filter((r) => names.length === 0 || names.includes(r.name)).map((r) => ({ typeUrl: source.typeUrl, value: Buffer.from(r.value) })),
    canary: false,
    typeUrl: source.typeUrl,
    nonce,
    controlPlane: undefined,
  };
}

function checkType(source: DiscoverySource, request: DiscoveryRequest): void {
  if (request.typeUrl !== "" && request.typeUrl !== source.typeUrl) {
    throw invalidArgument([{ field: "type_url", description: `must be ${source.typeUrl}` }]);
  }
}

/**
 * An xDS state-of-the-world stream: a stream gets the resources on its first
 * request and again after each change; an ACK or a NACK (the request
 * carrying the last response's nonce) gets nothing until they change.
 * Nothing is answered before `loaded` resolves (the limits in config are
 * known): resources from the empty set meanwhile would switch limits off.
 */
export function discoveryStream(source: DiscoverySource, loaded: Promise<unknown>) {
  return async (requests: AsyncIterable<DiscoveryRequest>, send: Send<DiscoveryResponse>, ctx: CallContext): Promise<void> => {
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
        checkType(source, request);
        if (request.errorDetail) ctx.log.warn({ typeUrl: source.typeUrl, version: request.versionInfo, nonce: request.responseNonce, error: request.errorDetail.message }, "an Envoy refused a configuration");
        const renamed = names !== undefined && request.resourceNames.join("\n") !== names.join("\n");
        names = request.resourceNames;
        // A first request, or a new subscription, gets the resources; an ACK or NACK waits for the next change.
        if (request.responseNonce === "" || renamed) sentVersion = "";
        push();
      }
      await sending;
    } finally {
      unsubscribe();
    }
  };
}

/** An xDS fetch: the resources now, once (after `loaded`). */
export function discoveryFetch(source: DiscoverySource, loaded: Promise<unknown>) {
  return async (request: DiscoveryRequest): Promise<DiscoveryResponse> => {
    checkType(source, request);
    await loaded;
    return response(source, request.resourceNames, "");
  };
}

/** Delta xDS, which is not served. */
export async function deltaNotServed(): Promise<never> {
  throw new MeshError({ code: status.UNIMPLEMENTED, reason: "VAL_UNSUPPORTED_PROTOCOL", message: "delta xDS is not served: use the state-of-the-world stream" });
}
