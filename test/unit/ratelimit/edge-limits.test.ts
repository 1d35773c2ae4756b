import { describe, expect, it } from "vitest";
import { BinaryReader } from "@bufbuild/protobuf/wire";
import { TypedExtensionConfig } from "@taskmesh/contracts/gen/envoy/config/core/v3/extension";
import { LocalRateLimit } from "@taskmesh/contracts/gen/envoy/extensions/filters/http/local_ratelimit/v3/local_rate_limit";
import { Runtime } from "@taskmesh/contracts/gen/envoy/service/runtime/v3/rtds";
import {
  EDGE_LIMITS_FILTER, EdgeLimitsSource, LOCAL_RATE_LIMIT_TYPE_URL, MAX_EDGE_BUCKETS, RuntimeLayerSource, localRateLimitConfig, parseLimits, tokenBucket,
} from "../../../services/ratelimit/src/index.js";

const SUBMIT = "/taskmesh.coordinator.v1.TaskService/SubmitTask";

/** The fields of an encoded message with their wire values, in order (field number → raw values). */
function fields(bytes: Uint8Array): Map<number, unknown[]> {
  const reader = new BinaryReader(bytes);
  const out = new Map<number, unknown[]>();
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    const value = wireType === 0 ? reader.uint64() : wireType === 2 ? reader.bytes() : (reader.skip(wireType), undefined);
    out.set(field, [...(out.get(field) ?? []), value]);
  }
  return out;
}

describe("the edge's limits (Envoy's local rate limit over ECDS)", () => {
  it("turns a limit into a token bucket refilled evenly over its window", () => {
    expect(tokenBucket({ requests: 3, windowMs: 60_000 })).toEqual({ maxTokens: 3, tokensPerFill: 1, fillIntervalMs: 20_000 });
    expect(tokenBucket({ requests: 600, windowMs: 60_000 })).toEqual({ maxTokens: 600, tokensPerFill: 1, fillIntervalMs: 100 });
    // Faster than a token every 50 ms (Envoy's shortest interval): many tokens every 50 ms, the same rate.
    expect(tokenBucket({ requests: 1_000_000, windowMs: 60_000 })).toEqual({ maxTokens: 1_000_000, tokensPerFill: 833, fillIntervalMs: 50 });
  });

  it("configures a descriptor per edge limit, the actions producing them, and the refusal's headers", () => {
    const set = parseLimits({
      shared: { descriptor: [{ key: "subject" }], requests: 600, per: "minute" },
      submit: { descriptor: [{ key: "subject" }, { key: "method", value: SUBMIT }], requests: 5, per: "second", scope: "edge" },
      "per-address": { descriptor: [{ key: "remote_address" }], requests: 60, per: "minute", scope: "edge" },
    });
    const bytes = localRateLimitConfig(set.edge);
    const config = LocalRateLimit.decode(bytes);
    expect(config.descriptors.map((d) => d.entries)).toEqual([
      [{ key: "subject", value: "" }, { key: "method", value: SUBMIT }],
      [{ key: "remote_address", value: "" }],
    ]);
    expect(config.descriptors[0]!.tokenBucket).toMatchObject({ maxTokens: 5, tokensPerFill: 1, fillInterval: { seconds: 0n, nanos: 200_000_000 } });
    expect(config.filterEnforced?.defaultValue?.numerator).toBe(100);
    expect(config.rateLimitedAsResourceExhausted).toBe(true);
    expect(config.responseHeadersToAdd.map((h) => h.header?.key)).toEqual(["grpc-status-details-bin"]);
    // Envoy 1.40's newer fields: one RateLimit per descriptor shape, the bucket cap, retry-after.
    const raw = fields(bytes);
    expect(raw.get(17)).toHaveLength(2);
    expect(Buffer.from(raw.get(17)![0] as Uint8Array).toString("latin1")).toContain("x-jwt-sub");
    expect(fields(raw.get(18)![0] as Uint8Array).get(1)).toEqual([BigInt(MAX_EDGE_BUCKETS)]);
    expect(raw.get(19)).toEqual([1n]);
  });

  it("limits nothing with no edge limit, and serves the config as one named extension config", () => {
    const empty = LocalRateLimit.decode(localRateLimitConfig([]));
    expect(empty.descriptors).toEqual([]);
    const source = new EdgeLimitsSource(parseLimits({ a: { descriptor: [{ key: "subject" }], requests: 1, per: "minute", scope: "edge" } }));
    const [resource] = source.current().resources;
    const typed = TypedExtensionConfig.decode(resource!.value);
    expect(typed.name).toBe(EDGE_LIMITS_FILTER);
    expect(typed.typedConfig?.typeUrl).toBe(LOCAL_RATE_LIMIT_TYPE_URL);
    // A global limit changes nothing here, and only an edge limit's change is a new version.
    source.update(parseLimits({ a: { descriptor: [{ key: "subject" }], requests: 1, per: "minute", scope: "edge" }, b: { descriptor: [{ key: "method" }], requests: 1, per: "minute" } }));
    expect(source.current().version).toBe("1");
    source.update(parseLimits({ a: { descriptor: [{ key: "subject" }], requests: 2, per: "minute", scope: "edge" } }));
    expect(source.current().version).toBe("2");
  });

  it("asks the global service about calls only while a global limit exists", () => {
    const layer = (value: unknown) => Runtime.decode(new RuntimeLayerSource(parseLimits(value)).current().resources[0]!.value).layer;
    expect(layer({ a: { descriptor: [{ key: "subject" }], requests: 1, per: "minute", scope: "edge" } })).toEqual({ "ratelimit.http_filter_enabled": 0 });
    expect(layer({ a: { descriptor: [{ key: "subject" }], requests: 1, per: "minute" } })).toEqual({ "ratelimit.http_filter_enabled": 100 });
  });
});
