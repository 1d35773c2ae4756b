import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { OPEN_PATHS } from "../../../packages/mesh/src/edge-security.js";
import { DOCS_BODY_LIMIT, buildMesh, localDocs, loadTopology, type Bootstrap } from "@taskmesh/mesh";
import { ROOT } from "@taskmesh/local/provision/versions";

/** The edge's config for a one-coordinator mesh, with the docs of this checkout or without. */
function edge(docs: boolean): Bootstrap {
  const mesh = buildMesh({
    topology: loadTopology(), stateDir: "/tmp/state", otlpGrpcPort: 4317,
    instances: [{ name: "coordinator-0", service: "coordinator", appPort: 1, inboundPort: 2, outboundPort: 3, adminPort: 4 }],
    edge: { descriptorSetPath: "/abs/gen/descriptor.binpb", ...(docs ? { docs: localDocs(ROOT) } : {}) },
  });
  return mesh.find((e) => e.kind === "edge")!.config;
}

function manager(config: Bootstrap) {
  return config.static_resources.listeners[0]!.filter_chains[0]!.filters[0]!.typed_config;
}

interface OpenApi {
  paths: Record<string, Record<string, { security?: unknown[] }>>;
}

describe("the API docs at the edge", () => {
  it("routes /docs and its files to Envoy's own answers from files that exist and fit the body limit, ahead of the services", () => {
    const { route_config: routes } = manager(edge(true));
    expect(routes.max_direct_response_body_size_bytes).toBe(DOCS_BODY_LIMIT);
    const docs = routes.virtual_hosts[0]!.routes.filter((r) => r.name?.startsWith("docs "));
    expect(docs.map((r) => r.match.path)).toEqual(["/docs", "/docs/", "/docs/openapi.json", "/docs/swagger-ui.css", "/docs/swagger-ui-bundle.js", "/docs/favicon-32x32.png"]);
    expect(routes.virtual_hosts[0]!.routes.slice(0, docs.length)).toEqual(docs);
    for (const route of docs) {
      const body = route.direct_response!.body!;
      const size = "filename" in body ? statSync(body.filename).size : Buffer.byteLength(body.inline_string);
      expect(size, route.match.path).toBeLessThanOrEqual(DOCS_BODY_LIMIT);
      expect(route.response_headers_to_add?.find((h) => h.header.key === "content-type")?.append_action, route.match.path).toBe("OVERWRITE_IF_EXISTS_OR_ADD");
    }
    expect(docs.find((r) => r.match.path === "/docs/openapi.json")!.direct_response!.body).toEqual({ filename: join(ROOT, "packages/contracts/gen/openapi/taskmesh.swagger.json") });
  });

  it("needs no token for /docs and below, and still one for every other path", () => {
    const jwt = manager(edge(true)).http_filters.find((f) => f.name === "envoy.filters.http.jwt_authn")! as unknown as { typed_config: {
      rules: Array<{ match: { path?: string; prefix?: string }; requires?: unknown }>;
    } };
    const open = jwt.typed_config.rules.filter((r) => r.requires === undefined).map((r) => r.match);
    expect(open).toEqual(expect.arrayContaining([{ path: "/docs" }, { prefix: "/docs/" }]));
    expect(open.some((m) => m.prefix === "/docs" || m.prefix === "/")).toBe(false);
    expect(jwt.typed_config.rules.at(-1)).toEqual({ match: { prefix: "/" }, requires: { provider_name: "taskmesh" } });
  });

  it("has no docs routes unless given their files", () => {
    const { route_config: routes } = manager(edge(false));
    expect(routes.virtual_hosts[0]!.routes.some((r) => r.name?.startsWith("docs "))).toBe(false);
    expect(routes.max_direct_response_body_size_bytes).toBeUndefined();
  });

  it("the OpenAPI document asks for no token exactly on the HTTP routes the edge lets through without one", () => {
    const document = JSON.parse(readFileSync(join(ROOT, "packages/contracts/gen/openapi/taskmesh.swagger.json"), "utf8")) as OpenApi;
    const open = Object.entries(document.paths).flatMap(([path, operations]) =>
      Object.values(operations).some((o) => Array.isArray(o.security) && o.security.length === 0) ? [path] : []);
    const httpOpenPaths = OPEN_PATHS.filter((p) => !p.startsWith("/taskmesh."));
    expect(open.sort()).toEqual([...httpOpenPaths].sort());
  });
});
