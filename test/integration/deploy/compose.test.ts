import { X509Certificate } from "node:crypto";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { ensureChecker } from "../../../deploy/check/tools.js";
import { composeInit } from "../../../deploy/compose/init.js";
import { gatherEdgeAssets } from "../../../deploy/container/edge-assets.js";
import { ensureEnvoy, envoyValidate } from "@taskmesh/local/provision/envoy";
import { pinned, ROOT } from "@taskmesh/local/provision/versions";
import { instanceNames, loadTopology } from "@taskmesh/mesh/topology";
import { ensureBuild } from "../../../scripts/build.mjs";

// deploy/compose/compose.yaml against the compose specification (compose-go,
// what `docker compose` loads it with), and what its mesh-init makes:
// certificates from up's CA code, secrets, and Envoy configs Envoy accepts.

const dir = mkdtempSync(join(tmpdir(), "taskmesh-test-compose-"));
const composePath = join(ROOT, "deploy/compose/compose.yaml");
let checker: string;
let compose: { services: Record<string, any> };

function checkCompose(text: string): { status: number | null; out: string } {
  const sub = mkdtempSync(join(dir, "c-"));
  writeFileSync(join(sub, "compose.yaml"), text);
  const r = spawnSync(checker, ["compose", join(sub, "compose.yaml")], { encoding: "utf8" });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

beforeAll(async () => {
  checker = ensureChecker();
  await ensureEnvoy();
  compose = parse(readFileSync(composePath, "utf8")) as typeof compose;
}, 900_000);

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("deploy/compose", () => {
  it("loads under the compose specification, and a file with an unknown key does not", () => {
    const good = spawnSync(checker, ["compose", composePath], { encoding: "utf8" });
    expect(`${good.stdout}${good.stderr}`).toBe("");
    expect(good.status).toBe(0);
    const bad = checkCompose(readFileSync(composePath, "utf8").replace("\n  redis:\n", "\n  redis:\n    healthckeck: {}\n"));
    expect(bad.status).toBe(1);
    expect(bad.out).toContain("services.redis.healthckeck");
  });

  it("runs every replica of the topology as its app and its sidecar, the app starting after what it needs is healthy", () => {
    const t = loadTopology();
    for (const { name, service } of instanceNames(t)) {
      const app = compose.services[name];
      const sidecar = compose.services[`${name}-sidecar`];
      expect(app.command).toEqual([service]);
      expect(app.network_mode).toBe(`service:${name}-sidecar`);
      expect(sidecar.networks.default.aliases).toEqual([name]);
      expect(app.healthcheck.test.slice(0, 3)).toEqual(["CMD", "taskmesh", "probe"]);
    }
    expect(compose.services["coordinator-0"].depends_on).toMatchObject({
      "ledger-0": { condition: "service_healthy" }, "config-0": { condition: "service_healthy" }, postgres: { condition: "service_healthy" }, redis: { condition: "service_healthy" },
    });
    expect(compose.services["events-0"].depends_on["kafka-topics"]).toEqual({ condition: "service_completed_successfully" });
    expect(Object.keys(compose.services.edge.depends_on)).toEqual(expect.arrayContaining(["coordinator-0", "identity-0", "config-0", "events-0", "ratelimit-0"]));
  });

  it("uses the official images at the versions the local runtime pins", () => {
    expect(compose.services.postgres.image).toBe(pinned("postgres").image);
    expect(compose.services.kafka.image).toBe(pinned("kafka").image);
    expect(compose.services.redis.image).toBe(pinned("redis").image);
    expect(compose.services.jaeger.image).toBe(pinned("jaeger").image);
    expect(compose.services.edge.image).toBe(pinned("envoy").image);
    expect(compose.services.kafka.environment.KAFKA_PROCESS_ROLES).toBe("broker,controller");
  });

  it("mesh-init writes each Envoy's folder, every config passing envoy --mode validate, with its own SPIFFE identity", async () => {
    const volume = join(dir, "volume");
    const assets = join(dir, "assets");
    gatherEdgeAssets(ROOT, ensureBuild(ROOT), assets);
    // The configs name the folder each Envoy mounts at /etc/taskmesh: here a link moved from one folder to the next.
    const current = join(dir, "current");
    const written = await composeInit({ dir: volume, assetsDir: assets, meshDir: current });
    expect(written.sort()).toEqual([...instanceNames(loadTopology()).map((i) => i.name), "edge"].sort());
    const failures: string[] = [];
    for (const name of written) {
      const home = join(volume, "envoy", name);
      rmSync(current, { force: true });
      symlinkSync(home, current);
      const identity = name === "edge" ? "edge" : name.replace(/-\d+$/, "");
      const cert = new X509Certificate(readFileSync(join(home, "certs/tls.crt")));
      expect(cert.subjectAltName?.split(", ")[0]).toBe(`URI:spiffe://taskmesh.local/${identity}`);
      expect(statSync(join(home, "certs/tls.key")).mode & 0o077).toBe(0);
      await envoyValidate(join(home, "envoy.yaml")).catch((error: Error) => failures.push(`${name}: ${error.message}`));
    }
    expect(failures).toEqual([]);
    expect(readFileSync(join(volume, "secrets/ledger/pgpass"), "utf8")).toMatch(/^postgres:5432:taskmesh:taskmesh:\S+\n$/);
    expect(existsSync(join(volume, "secrets/identity/identity.kek"))).toBe(true);
    expect(existsSync(join(volume, "secrets/worker"))).toBe(false);
    // A second run keeps the CA and the password.
    const password = readFileSync(join(volume, "secrets/postgres/password"), "utf8");
    const ca = readFileSync(join(volume, "envoy/edge/certs/ca.crt"), "utf8");
    await composeInit({ dir: volume, assetsDir: assets, meshDir: current });
    expect(readFileSync(join(volume, "secrets/postgres/password"), "utf8")).toBe(password);
    expect(readFileSync(join(volume, "envoy/edge/certs/ca.crt"), "utf8")).toBe(ca);
  }, 180_000);
});
