/**
 * compose's `mesh-init` (the image's `compose-init`): everything the mesh
 * needs that is not committed, made at `docker compose up` by the same code
 * as `up`'s, into the `mesh` volume:
 *
 *   state/certs/                 the mesh CA and every identity (packages/local/src/certs.ts)
 *   envoy/<name>/envoy.yaml      each sidecar's and the edge's config (deploy/container/mesh.ts)
 *   envoy/<name>/certs/          its SDS files, the CA (ca.crt) and its identity (tls.crt, tls.key)
 *   envoy/edge/assets/           the edge's static files (from the image)
 *   secrets/postgres/password    the database password (generated once)
 *   secrets/<service>/pgpass     the same, for the services that use Postgres (PGPASSFILE)
 *   secrets/identity/identity.kek  identity's key-encryption key (generated once)
 *
 * Run again (`docker compose run --rm mesh-init`), it keeps the CA, the
 * password and the key, renews identities that end within 7 days, and
 * rewrites what changed; Envoys take new certificates without a restart.
 *
 *   node deploy/compose/init.js <folder> [--assets <edge assets folder>]
 */
import { chmodSync, cpSync, existsSync, mkdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { privateDir, writeIfChanged } from "@taskmesh/local/cert-files";
import { ensureMeshCerts, MESH_IDENTITIES } from "@taskmesh/local/certs";
import { localSecret } from "@taskmesh/local/secrets";
import { loadTopology, toYaml, type Topology } from "@taskmesh/mesh";
import { IMAGE_ASSETS_DIR, MESH_DIR, PORTS } from "../container/layout.js";
import { containerMesh, sdsFiles } from "../container/mesh.js";
import { STORES } from "../container/service-env.js";
import { COMPOSE_HOSTS, DATABASE, composeInstances } from "./network.js";

/** Options of {@link composeInit}. */
export interface ComposeInitOptions {
  /** The `mesh` volume's folder. */
  readonly dir: string;
  /** The edge's static files (deploy/container/edge-assets.ts). @default IMAGE_ASSETS_DIR */
  readonly assetsDir?: string;
  /** The folder the Envoys' configs name (where each Envoy mounts its folder). @default MESH_DIR */
  readonly meshDir?: string;
  readonly topology?: Topology;
}

const DAY = 86_400_000;

/** Writes (or refreshes) the volume's contents; returns the names of the Envoys it wrote for. */
export async function composeInit(options: ComposeInitOptions): Promise<string[]> {
  const t = options.topology ?? loadTopology();
  const dir = resolve(options.dir);
  // Longer-lived than `up`'s (24 h): a compose run may go on for weeks between two inits.
  const certs = await ensureMeshCerts(join(dir, "state"), MESH_IDENTITIES, { leafValidityMs: 30 * DAY, renewBeforeMs: 7 * DAY });
  const envoys = containerMesh({
    topology: t, instances: composeInstances(t), otlpAddress: COMPOSE_HOSTS.jaeger, jaegerUrl: `http://127.0.0.1:${PORTS.jaegerUi}`,
    ...(options.meshDir ? { meshDir: options.meshDir } : {}),
  });
  for (const envoy of envoys) {
    const home = join(dir, "envoy", envoy.name);
    const certsDir = join(home, "certs");
    privateDir(certsDir);
    const identity = certs.identities[envoy.kind === "edge" ? "edge" : envoy.service!];
    if (!identity) throw new Error(`no certificate for ${envoy.name}`);
    // The key and certificate first, the SDS files last: Envoy reloads on each rename and settles on the matching pair.
    writeIfChanged(join(certsDir, "ca.crt"), readFileSync(certs.caPath, "utf8"));
    writeIfChanged(join(certsDir, "tls.key"), readFileSync(identity.keyPath, "utf8"));
    writeIfChanged(join(certsDir, "tls.crt"), readFileSync(identity.certPath, "utf8"));
    for (const [file, text] of Object.entries(sdsFiles(join(options.meshDir ?? MESH_DIR, "certs")))) writeIfChanged(join(certsDir, file), text);
    writeIfChanged(join(home, "envoy.yaml"), toYaml(envoy.config));
    if (envoy.kind === "edge") cpSync(options.assetsDir ?? IMAGE_ASSETS_DIR, join(home, "assets"), { recursive: true });
  }
  const secrets = join(dir, "secrets");
  privateDir(join(secrets, "postgres"));
  const password = localSecret(join(secrets, "postgres", "password"), 24);
  for (const service of Object.keys(t.services)) {
    const uses = STORES[service] ?? [];
    if (!uses.includes("postgres") && service !== "identity") continue;
    privateDir(join(secrets, service));
    if (uses.includes("postgres")) {
      writeIfChanged(join(secrets, service, "pgpass"), `${COMPOSE_HOSTS.postgres}:${PORTS.postgres}:${DATABASE}:${DATABASE}:${password}\n`);
    }
    if (service === "identity") localSecret(join(secrets, service, "identity.kek"), 32, "base64");
  }
  // The CA's folder stays private to this container; Envoys see only their own folder.
  if (existsSync(join(dir, "state"))) chmodSync(join(dir, "state"), 0o700);
  mkdirSync(join(dir, "envoy"), { recursive: true });
  return envoys.map((e) => e.name);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const at = args.indexOf("--assets");
  const assetsDir = at >= 0 ? args[at + 1] : undefined;
  const dir = args.find((a, i) => !a.startsWith("--") && args[i - 1] !== "--assets");
  if (!dir) {
    process.stderr.write("usage: init.js <folder> [--assets <edge assets folder>]\n");
    process.exit(2);
  }
  const written = await composeInit({ dir, ...(assetsDir ? { assetsDir } : {}) });
  process.stdout.write(`taskmesh: mesh-init wrote certificates, secrets and the configs of ${written.length} Envoys into ${dir}\n`);
}
