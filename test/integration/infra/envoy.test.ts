import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EnvoyConfigError, ensureEnvoy, envoyReady, envoySpec, envoyValidate, envoyVersion } from "@taskmesh/local/provision/envoy";
import { pinned } from "@taskmesh/local/provision/versions";
import { freePort } from "@taskmesh/local/secrets";
import { runProcess, type RunningProcess } from "@taskmesh/local/supervisor";

// The pinned Envoy from its PyPI wheel, run by the supervisor with a minimal static configuration.
const dir = mkdtempSync(join(tmpdir(), "taskmesh-test-envoy-"));
const logDir = join(dir, "logs");
let envoy: string;
let adminPort: number;
let listenerPort: number;
let running: RunningProcess | undefined;

/** Admin on 127.0.0.1 and one HTTP listener whose only route answers directly. */
function config(admin: number, listener: number): string {
  return `admin:
  address: { socket_address: { address: 127.0.0.1, port_value: ${admin} } }
static_resources:
  listeners:
    - name: direct
      address: { socket_address: { address: 127.0.0.1, port_value: ${listener} } }
      filter_chains:
        - filters:
            - name: envoy.filters.network.http_connection_manager
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                stat_prefix: direct
                route_config:
                  virtual_hosts:
                    - name: all
                      domains: ["*"]
                      routes:
                        - match: { prefix: "/" }
                          direct_response: { status: 200, body: { inline_string: "hello from envoy" } }
                http_filters:
                  - name: envoy.filters.http.router
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
`;
}

beforeAll(async () => {
  const t = Date.now();
  envoy = await ensureEnvoy();
  console.info(`envoy: provisioning ${Date.now() - t} ms`);
  adminPort = await freePort();
  do listenerPort = await freePort();
  while (listenerPort === adminPort);
}, 300_000);

afterAll(async () => {
  await running?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe("envoy (local runtime)", () => {
  it("is the pinned version from the wheel", async () => {
    expect(envoy).toMatch(/site-packages\/envoy\/_bin\/envoy$/);
    expect(await envoyVersion(envoy)).toBe(pinned("envoy").version);
  });

  it("validates a good configuration and rejects a broken one with Envoy's message", async () => {
    const good = join(dir, "good.yaml");
    writeFileSync(good, config(adminPort, listenerPort));
    await expect(envoyValidate(good)).resolves.toBeUndefined();

    const unknownField = join(dir, "unknown-field.yaml");
    writeFileSync(unknownField, config(adminPort, listenerPort).replace("stat_prefix: direct", "stat_prefix: direct\n                no_such_field: 1"));
    const error = await envoyValidate(unknownField).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(EnvoyConfigError);
    expect((error as Error).message).toMatch(/no_such_field/);

    const badRoute = join(dir, "bad-route.yaml");
    writeFileSync(badRoute, config(adminPort, listenerPort).replace("direct_response: { status: 200,", "direct_response: { status: 42,"));
    await expect(envoyValidate(badRoute)).rejects.toThrow(/status/);
  });

  it("runs with the configuration: /ready answers LIVE and the listener answers directly", async () => {
    const configPath = join(dir, "envoy.yaml");
    writeFileSync(configPath, config(adminPort, listenerPort));
    const t = Date.now();
    running = await runProcess(envoySpec({ name: "envoy-test", configPath, adminPort, logDir, kind: "edge", ports: { app: listenerPort } }), { logDir });
    console.info(`envoy: start ${Date.now() - t} ms`);
    expect(await envoyReady(adminPort)).toBe(true);
    const ready = await fetch(`http://127.0.0.1:${adminPort}/ready`);
    expect(ready.status).toBe(200);
    expect((await ready.text()).trim()).toBe("LIVE");
    const response = await fetch(`http://127.0.0.1:${listenerPort}/anything`);
    expect(response.status).toBe(200);
    expect(await response.text()).toBe("hello from envoy");
    expect(running.supervisor.status()[0]).toMatchObject({ name: "envoy-test", kind: "edge", state: "running", ports: { admin: adminPort, app: listenerPort } });
  });
});
