import { describe, expect, it } from "vitest";
import { buildMesh, loadTopology, type Bootstrap } from "@taskmesh/mesh";
import { TOKEN_CACHE_SIZE, type EdgeAuthOptions } from "../../../packages/mesh/src/edge-security.js";

/** The jwt_authn provider of the edge of a one-coordinator mesh. */
function provider(auth?: EdgeAuthOptions): Record<string, unknown> {
  const mesh = buildMesh({
    topology: loadTopology(), stateDir: "/tmp/state", otlpGrpcPort: 4317,
    instances: [{ name: "coordinator-0", service: "coordinator", appPort: 1, inboundPort: 2, outboundPort: 3, adminPort: 4 }],
    edge: { descriptorSetPath: "/abs/gen/descriptor.binpb", ...(auth ? { auth } : {}) },
  });
  const config: Bootstrap = mesh.find((e) => e.kind === "edge")!.config;
  const filters = config.static_resources.listeners[0]!.filter_chains[0]!.filters[0]!.typed_config.http_filters;
  const jwt = filters.find((f) => f.name === "envoy.filters.http.jwt_authn")! as unknown as { typed_config: { providers: Record<string, Record<string, unknown>> } };
  return jwt.typed_config.providers.taskmesh!;
}

describe("the edge's token check", () => {
  it("keeps verified tokens by default, so a token seen again is not parsed and RS256-checked again", () => {
    expect(provider().jwt_cache_config).toEqual({ jwt_cache_size: TOKEN_CACHE_SIZE });
    expect(provider({ tokenCacheSize: 50 }).jwt_cache_config).toEqual({ jwt_cache_size: 50 });
  });

  it("checks every token in full with the cache off", () => {
    expect(provider({ tokenCacheSize: 0 })).not.toHaveProperty("jwt_cache_config");
  });
});
