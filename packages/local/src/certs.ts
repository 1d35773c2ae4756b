/**
 * The mesh's certificates under `<stateDir>/certs/`: one CA and one SPIFFE
 * identity per mesh participant, each published to Envoy through a
 * file-based SDS file. Layout (every file 0600, every folder 0700):
 *
 *   ca.pem, ca.key.pem              the mesh CA (ECDSA P-256, 10 years)
 *   sds-ca.yaml                     Secret `mesh-ca`: validation_context → ca.pem
 *   <name>/cert-<serial>.pem        one generation's leaf (chain = leaf only) …
 *   <name>/key-<serial>.pem         … and its key; never rewritten
 *   <name>/cert.pem, key.pem        copies of the current generation, for tools
 *   <name>/sds-cert.yaml            Secret `mesh-cert`: tls_certificate → the current generation
 *
 * Rotation writes a new generation under new names and then swaps
 * sds-cert.yaml by rename, so an Envoy watching the folder reads either the
 * old pair or the new pair, never a mix, and needs no restart.
 */
import { existsSync, readdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { ensureCa, type Ca } from "./cert-authority.js";
import { withLock } from "./cert-files.js";
import { currentIdentity, issue, readLeaf, type MeshIdentity } from "./cert-identity.js";
import { certConfig, type MeshCertOptions } from "./cert-options.js";
import { identities, loadTopology } from "@taskmesh/mesh/topology";

export { CA_SECRET, CERT_SECRET, sdsConfigSource } from "./cert-files.js";
export { TRUST_DOMAIN, spiffeId, type MeshIdentity } from "./cert-identity.js";
export type { MeshCertOptions } from "./cert-options.js";

/** Every mesh participant that gets an identity: the services of deploy/topology.yaml and the edge Envoy. */
export const MESH_IDENTITIES: readonly string[] = Object.freeze(identities(loadTopology()));

/** The mesh CA and the identities, with the absolute paths Envoy configs use. */
export interface MeshCerts {
  /** `<stateDir>/certs`. */
  readonly dir: string;
  readonly caPath: string;
  readonly caKeyPath: string;
  /** `sds-ca.yaml`: the SDS file of Secret `mesh-ca` (trusted CA). */
  readonly sdsCaPath: string;
  readonly caSerial: string;
  readonly identities: Readonly<Record<string, MeshIdentity>>;
}

/** One identity's rotation: the serial it had (undefined when it had none) and the new one. */
export interface Rotation {
  readonly name: string;
  readonly from: string | undefined;
  readonly to: string;
}

/**
 * Makes sure the CA exists (creating it if missing or unusable) and that
 * every named identity has a key pair issued by it that is valid for more
 * than `renewBeforeMs`; issues what is missing. A second call reuses
 * everything.
 */
export async function ensureMeshCerts(stateDir: string, names: readonly string[] = MESH_IDENTITIES, options: MeshCertOptions = {}): Promise<MeshCerts> {
  const config = certConfig(options);
  const chosen = checkNames(names);
  return withLock(certsDir(stateDir), async () => {
    const ca = await ensureCa(certsDir(stateDir), config);
    const identities: Record<string, MeshIdentity> = {};
    for (const name of chosen) identities[name] = currentIdentity(ca, name, config) ?? await issue(ca, name, config);
    return meshCerts(ca, identities);
  });
}

/**
 * Issues a new key pair (new serial) for every named identity under the same
 * CA and points its SDS file at it. Without names: every default identity
 * and every other one found on disk.
 */
export async function rotateMeshCerts(stateDir: string, names?: readonly string[], options: MeshCertOptions = {}): Promise<MeshCerts & { readonly rotated: readonly Rotation[] }> {
  const config = certConfig(options);
  const dir = certsDir(stateDir);
  return withLock(dir, async () => {
    const known = new Set([...MESH_IDENTITIES, ...onDisk(dir)]);
    const chosen = names && names.length > 0 ? checkNames(names) : [...known];
    const unknown = chosen.filter((n) => !known.has(n));
    if (unknown.length > 0) throw new Error(`no mesh identity ${unknown.join(", ")} (known: ${[...known].join(", ")})`);
    const ca = await ensureCa(dir, config);
    const identities: Record<string, MeshIdentity> = {};
    const rotated: Rotation[] = [];
    for (const name of chosen) {
      const from = readLeaf(ca, name)?.serial;
      identities[name] = await issue(ca, name, config);
      rotated.push({ name, from, to: identities[name].serial });
    }
    return { ...meshCerts(ca, identities), rotated };
  });
}

// ---------------------------------------------------------------------------

function certsDir(stateDir: string): string {
  return join(resolve(stateDir), "certs");
}

function checkNames(names: readonly string[]): string[] {
  for (const name of names) {
    if (!/^[a-z][a-z0-9-]{0,62}$/.test(name)) throw new Error(`not a mesh identity name: ${JSON.stringify(name)} (lowercase letters, digits, -)`);
  }
  return [...new Set(names)];
}

/** Identity folders already under certs/ (those with an SDS file). */
function onDisk(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isDirectory() && existsSync(join(dir, e.name, "sds-cert.yaml")))
    .map((e) => e.name);
}

function meshCerts(ca: Ca, identities: Record<string, MeshIdentity>): MeshCerts {
  return { dir: ca.dir, caPath: ca.certPath, caKeyPath: ca.keyPath, sdsCaPath: ca.sdsPath, caSerial: ca.cert.serialNumber.toLowerCase(), identities };
}
