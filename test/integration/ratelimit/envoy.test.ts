import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { Metadata } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { ConfigServiceService } from "@taskmesh/contracts/gen/taskmesh/config/v1/config";
import { envoySpec, envoyValidate } from "@taskmesh/local/provision/envoy";
import { edgeLimitsFilter, rateLimitRuntimeLayer } from "../../../packages/mesh/src/edge-security.js";
import { freePort } from "@taskmesh/local/secrets";
import { runProcess, type RunningProcess } from "@taskmesh/local/supervisor";
import { Code, MeshError, createClient, type MeshClient } from "@taskmesh/kit";
import { counterSum, runtimeValue as edgeRuntime } from "../../support/envoy-admin.js";
import { DOMAIN, eventually, startRatelimit, type RatelimitStack } from "./support.js";

const run = promisify(execFile);
const GET = "/taskmesh.config.v1.ConfigService/Get";

/**
 * An Envoy whose ratelimit filter is set up as the edge's (domain, timeout,
 * `rate_limited_as_resource_exhausted`, DRAFT_VERSION_03 headers), with the
 * edge's `[subject]` and `[subject, method]` descriptors, runtime layer
 * (RTDS from the ratelimit service) and local rate limit filter (its config
 * over ECDS from the ratelimit service), in front of a config replica.
 */
function envoyConfig(ports: { admin: number; listener: number; ratelimit: number; config: number }): string {
  const cluster = (name: string, port: number) => ({
    name, type: "STATIC", connect_timeout: "1s",
    typed_extension_protocol_options: {
      "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
        explicit_http_config: { http2_protocol_options: {} },
      },
    },
    load_assignment: { cluster_name: name, endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: "127.0.0.1", port_value: port } } } }] }] },
  });
  const subject = { request_headers: { header_name: "x-jwt-sub", descriptor_key: "subject" } };
  return JSON.stringify({
    node: { id: "ratelimit-test-edge", cluster: "edge" },
    admin: { address: { socket_address: { address: "127.0.0.1", port_value: ports.admin } } },
    // The edge's runtime layer from the ratelimit service (RTDS), as the edge's bootstrap has it.
    layered_runtime: { layers: [rateLimitRuntimeLayer(), { name: "admin", admin_layer: {} }] },
    static_resources: {
      listeners: [{
        name: "edge",
        address: { socket_address: { address: "127.0.0.1", port_value: ports.listener } },
        filter_chains: [{
          filters: [{
            name: "envoy.filters.network.http_connection_manager",
            typed_config: {
              "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
              stat_prefix: "edge",
              codec_type: "AUTO",
              route_config: {
                virtual_hosts: [{
                  name: "all", domains: ["*"],
                  rate_limits: [
                    { actions: [subject] },
                    { actions: [subject, { request_headers: { header_name: ":path", descriptor_key: "method" } }] },
                  ],
                  routes: [{ match: { prefix: "/" }, route: { cluster: "config", timeout: "5s" } }],
                }],
              },
              http_filters: [
                // The edge's own limits (ECDS from the ratelimit service), as the edge has them.
                edgeLimitsFilter(),
                {
                  name: "envoy.filters.http.ratelimit",
                  typed_config: {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit",
                    domain: DOMAIN,
                    timeout: "0.25s",
                    failure_mode_deny: false,
                    rate_limited_as_resource_exhausted: true,
                    enable_x_ratelimit_headers: "DRAFT_VERSION_03",
                    rate_limit_service: { grpc_service: { envoy_grpc: { cluster_name: "ratelimit" } }, transport_api_version: "V3" },
                  },
                },
                { name: "envoy.filters.http.router", typed_config: { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" } },
              ],
            },
          }],
        }],
      }],
      clusters: [cluster("ratelimit", ports.ratelimit), cluster("config", ports.config)],
    },
  }, null, 2);
}

describe("ratelimit behind Envoy's ratelimit filter", () => {
  const dir = mkdtempSync(join(tmpdir(), "taskmesh-test-ratelimit-envoy-"));
  let stack: RatelimitStack;
  let envoy: RunningProcess | undefined;
  let edge: MeshClient<typeof ConfigServiceService>;
  let edgeAddress: string;
  let admin: string;

  /** The edge's value of a runtime key (undefined while no layer sets it). */
  const runtimeValue = (key: string): Promise<string | undefined> => edgeRuntime(admin, key);
  /** How many times the ratelimit filter asked the service about a call routed to `config`. */
  const filterCalls = (): Promise<number> => counterSum(admin, "^cluster\\.config\\.ratelimit\\.");

  const as = (subject: string) => {
    const metadata = new Metadata();
    metadata.set("x-jwt-sub", subject);
    return { metadata };
  };

  beforeAll(async () => {
    stack = await startRatelimit("ratelimit_envoy", inject("redisUrl"));
    await stack.put("/ratelimit/limits", {
      "per-subject": { descriptor: [{ key: "subject" }], requests: 100, per: "minute" },
      get: { descriptor: [{ key: "subject" }, { key: "method", value: GET }], requests: 2, per: "minute" },
    });
    await stack.put("/demo/greeting", "hello");
    await eventually(async () => expect((await stack.ask("probe")).statuses[0]?.currentLimit?.name).toBe("per-subject"));
    const ports = { admin: await freePort(), listener: await freePort(), ratelimit: Number(stack.address.split(":")[1]), config: Number(stack.config.address.split(":")[1]) };
    const configPath = join(dir, "envoy.json");
    writeFileSync(configPath, envoyConfig(ports));
    await envoyValidate(configPath);
    envoy = await runProcess(envoySpec({ name: "ratelimit-test-edge", kind: "edge", configPath, adminPort: ports.admin, logDir: join(dir, "logs") }), { logDir: join(dir, "logs") });
    edgeAddress = `127.0.0.1:${ports.listener}`;
    admin = `http://127.0.0.1:${ports.admin}`;
    edge = createClient(ConfigServiceService, edgeAddress);
  }, 120_000);

  afterAll(async () => {
    edge?.close();
    await envoy?.stop();
    await stack?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("lets N calls through, then the caller gets RESOURCE_EXHAUSTED with RATE_LIMITED and RetryInfo", async () => {
    for (let i = 0; i < 2; i++) expect((await edge.get({ key: "/demo/greeting" }, as("alice"))).entry?.value).toBe("hello");
    const error = await edge.get({ key: "/demo/greeting" }, as("alice")).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(MeshError);
    const refused = error as MeshError;
    expect(refused.code).toBe(Code.RESOURCE_EXHAUSTED);
    expect(refused.reason).toBe("RATE_LIMITED");
    expect(refused.metadata).toMatchObject({ name: "get", descriptor: `subject=alice,method=${GET}`, limit: "2/minute" });
    expect(refused.retryAfterMs).toBeGreaterThan(50_000);
    expect(refused.retryAfterMs).toBeLessThanOrEqual(60_000);
    // Another subject is not affected.
    expect((await edge.get({ key: "/demo/greeting" }, as("bob"))).entry?.value).toBe("hello");
  });

  it("sends x-ratelimit headers on admitted calls", async () => {
    const { stdout } = await run("grpcurl", ["-plaintext", "-v", "-H", "x-jwt-sub: carol", "-d", '{"key":"/demo/greeting"}', edgeAddress, GET.slice(1)], { timeout: 10_000 });
    // The tightest limit first, then every limit with its window and name.
    expect(stdout).toContain('x-ratelimit-limit: 2, 100;w=60;name="per-subject", 2;w=60;name="get"');
    expect(stdout).toMatch(/x-ratelimit-remaining: 1/);
    expect(stdout).toMatch(/x-ratelimit-reset: \d+/);
  });

  it("with no limit configured the filter asks the service nothing, and a limit put later applies live", async () => {
    expect(await runtimeValue("ratelimit.http_filter_enabled")).toBe("100");
    await stack.put("/ratelimit/limits", {});
    await eventually(async () => expect(await runtimeValue("ratelimit.http_filter_enabled")).toBe("0"));
    const before = await filterCalls();
    for (let i = 0; i < 5; i++) expect((await edge.get({ key: "/demo/greeting" }, as("dave"))).entry?.value).toBe("hello");
    expect(await filterCalls()).toBe(before);

    await stack.put("/ratelimit/limits", { get: { descriptor: [{ key: "subject" }, { key: "method", value: GET }], requests: 1, per: "minute" } });
    await eventually(async () => expect(await runtimeValue("ratelimit.http_filter_enabled")).toBe("100"));
    await edge.get({ key: "/demo/greeting" }, as("erin"));
    const refused = await edge.get({ key: "/demo/greeting" }, as("erin")).catch((e: unknown) => MeshError.from(e));
    expect(refused).toMatchObject({ code: Code.RESOURCE_EXHAUSTED, reason: "RATE_LIMITED" });
    expect(await filterCalls()).toBe(before + 2);
  });
  it("keeps the last layer while the ratelimit service is down, and takes the current one from its new process", async () => {
    await stack.put("/ratelimit/limits", { get: { descriptor: [{ key: "subject" }, { key: "method", value: GET }], requests: 100, per: "minute" } });
    await eventually(async () => expect(await runtimeValue("ratelimit.http_filter_enabled")).toBe("100"));
    await stack.restart(async () => {
      // Down: the edge keeps what it had, and a change meanwhile reaches only config.
      await stack.put("/ratelimit/limits", {});
      await new Promise((r) => setTimeout(r, 500));
      expect(await runtimeValue("ratelimit.http_filter_enabled")).toBe("100");
    });
    // Envoy reconnects its runtime stream (with backoff) and gets the new process's layer.
    await eventually(async () => expect(await runtimeValue("ratelimit.http_filter_enabled")).toBe("0"), 20_000);
  });

  it("counts an edge limit in Envoy itself: 20 concurrent calls against 3 admit exactly 3, with no call to the service, and a change applies live", async () => {
    const reloads = (): Promise<number> => counterSum(admin, "^extension_config_discovery\\.http_filter\\.taskmesh\\.edge\\.local_ratelimit\\.config_reload$");
    const edgeGet = (requests: number) => ({ "edge-get": { descriptor: [{ key: "subject" }, { key: "method", value: GET }], requests, per: "minute", scope: "edge" } });
    let seen = await reloads();
    await stack.put("/ratelimit/limits", edgeGet(3));
    await eventually(async () => expect(await reloads()).toBeGreaterThan(seen), 20_000);
    expect(await runtimeValue("ratelimit.http_filter_enabled")).toBe("0");
    const before = await filterCalls();

    const burst = async (subject: string, n: number) => {
      const outcomes = await Promise.all(Array.from({ length: n }, () => edge.get({ key: "/demo/greeting" }, as(subject)).then(() => "ok", (e: unknown) => MeshError.from(e))));
      return { admitted: outcomes.filter((o) => o === "ok").length, refused: outcomes.filter((o): o is MeshError => o !== "ok") };
    };
    const frank = await burst("frank", 20);
    expect(frank.admitted).toBe(3);
    expect(frank.refused).toHaveLength(17);
    for (const refused of frank.refused) expect(refused).toMatchObject({ code: Code.RESOURCE_EXHAUSTED, reason: "RATE_LIMITED", metadata: { scope: "edge" } });
    // Counted per subject (the descriptor takes any subject), and only on that method.
    expect((await burst("grace", 4)).admitted).toBe(3);
    expect((await edge.list({ prefix: "/demo/", pageSize: 0, pageToken: "" }, as("frank"))).entries.length).toBeGreaterThan(0);
    // Envoy counted these itself: the ratelimit service was not asked.
    expect(await filterCalls()).toBe(before);

    seen = await reloads();
    await stack.put("/ratelimit/limits", edgeGet(5));
    await eventually(async () => expect(await reloads()).toBeGreaterThan(seen), 20_000);
    expect((await burst("heidi", 8)).admitted).toBe(5);
  });
});
