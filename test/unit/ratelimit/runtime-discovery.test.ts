import { describe, expect, it } from "vitest";
import { DiscoveryRequest, type DiscoveryResponse } from "@taskmesh/contracts/gen/envoy/service/discovery/v3/discovery";
import { Runtime } from "@taskmesh/contracts/gen/envoy/service/runtime/v3/rtds";
import { createLogger, type CallContext } from "@taskmesh/kit";
import { RUNTIME_TYPE_URL, RuntimeLayerSource, parseLimits, runtimeDiscoveryHandlers } from "../../../services/ratelimit/src/index.js";

const ctx = { log: createLogger({ level: "silent" }) } as unknown as CallContext;
const someLimit = parseLimits({ submit: { descriptor: [{ key: "subject" }], requests: 1, per: "minute" } });
const none = parseLimits({});

/** A request stream the test writes to, and the responses the handler sent. */
function stream() {
  const queue: DiscoveryRequest[] = [];
  let wake: (() => void) | undefined;
  let ended = false;
  const sent: DiscoveryResponse[] = [];
  const requests: AsyncIterable<DiscoveryRequest> = {
    async *[Symbol.asyncIterator]() {
      for (;;) {
        while (queue.length > 0) yield queue.shift()!;
        if (ended) return;
        await new Promise<void>((r) => (wake = r));
      }
    },
  };
  const write = (r: Partial<DiscoveryRequest>) => {
    queue.push(DiscoveryRequest.fromPartial({ typeUrl: RUNTIME_TYPE_URL, ...r }));
    wake?.();
  };
  const end = () => {
    ended = true;
    wake?.();
  };
  return { requests, sent, send: async (m: DiscoveryResponse) => void sent.push(m), write, end };
}

const layerOf = (r: DiscoveryResponse) => Runtime.decode(r.resources[0]!.value);
const settle = () => new Promise((r) => setTimeout(r, 10));

describe("the ratelimit service's runtime discovery (RTDS)", () => {
  it("sends the layer on the first request, nothing on an ACK or a NACK, and each change once", async () => {
    const source = new RuntimeLayerSource(someLimit);
    const s = stream();
    const done = runtimeDiscoveryHandlers(source).streamRuntime(s.requests, s.send, ctx);
    s.write({ resourceNames: ["ratelimit"] });
    await settle();
    expect(s.sent).toHaveLength(1);
    expect(s.sent[0]).toMatchObject({ versionInfo: "1", typeUrl: RUNTIME_TYPE_URL, nonce: "1" });
    expect(layerOf(s.sent[0]!)).toEqual({ name: "ratelimit", layer: { "ratelimit.http_filter_enabled": 100 } });

    s.write({ resourceNames: ["ratelimit"], versionInfo: "1", responseNonce: "1" });
    await settle();
    expect(s.sent).toHaveLength(1);

    source.update(none);
    source.update(none);
    await settle();
    expect(s.sent).toHaveLength(2);
    expect(s.sent[1]).toMatchObject({ versionInfo: "2", nonce: "2" });
    expect(layerOf(s.sent[1]!).layer).toEqual({ "ratelimit.http_filter_enabled": 0 });

    s.write({ resourceNames: ["ratelimit"], versionInfo: "1", responseNonce: "2", errorDetail: { code: 3, message: "refused", details: [] } });
    await settle();
    expect(s.sent).toHaveLength(2);
    s.end();
    await done;
  });

  it("answers nothing before the limits are loaded, then the loaded layer", async () => {
    const source = new RuntimeLayerSource(none);
    let loaded!: () => void;
    const s = stream();
    const done = runtimeDiscoveryHandlers(source, new Promise<void>((r) => (loaded = r))).streamRuntime(s.requests, s.send, ctx);
    s.write({ resourceNames: ["ratelimit"] });
    await settle();
    expect(s.sent).toHaveLength(0);
    source.update(someLimit);
    loaded();
    await settle();
    expect(s.sent.map((r) => layerOf(r).layer)).toEqual([{ "ratelimit.http_filter_enabled": 100 }]);
    s.end();
    await done;
  });

  it("refuses another resource type with INVALID_ARGUMENT, and delta xDS with UNIMPLEMENTED", async () => {
    const handlers = runtimeDiscoveryHandlers(new RuntimeLayerSource(none));
    const s = stream();
    s.write({ typeUrl: "type.googleapis.com/envoy.config.cluster.v3.Cluster" });
    s.end();
    await expect(handlers.streamRuntime(s.requests, s.send, ctx)).rejects.toMatchObject({ code: 3, reason: "VAL_INVALID_ARGUMENT" });
    await expect(handlers.deltaRuntime((async function* () {})(), async () => undefined, ctx)).rejects.toMatchObject({ code: 12 });
  });
});
