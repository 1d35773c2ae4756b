import { ensureMeshCerts, rotateMeshCerts, type MeshCertOptions, type MeshIdentity } from "@taskmesh/local/certs";
import { STATE_DIR } from "@taskmesh/local/state";
import { table } from "./inspect.js";
import { parseDurationArg } from "./task-args.js";

/** Options of `taskmesh certs` and `taskmesh certs rotate`. */
export interface CertsOptions {
  readonly json?: boolean;
  /** How long new identity certificates are valid, e.g. `24h`. */
  readonly validity?: string;
}

function certOptions(opts: CertsOptions): MeshCertOptions {
  return opts.validity === undefined ? {} : { leafValidityMs: parseDurationArg("--validity", opts.validity) };
}

function identityJson(i: MeshIdentity): Record<string, string> {
  return { name: i.name, spiffeId: i.spiffeId, serial: i.serial, notAfter: i.notAfter.toISOString(), certPath: i.certPath, keyPath: i.keyPath, sdsPath: i.sdsPath };
}

/** `taskmesh certs [--json]`: creates the mesh CA and every identity's key pair if missing or ending within the hour; prints them. */
export async function certs(opts: CertsOptions): Promise<number> {
  const mesh = await ensureMeshCerts(STATE_DIR, undefined, certOptions(opts));
  const identities = Object.values(mesh.identities);
  if (opts.json) {
    console.log(JSON.stringify({ dir: mesh.dir, caPath: mesh.caPath, sdsCaPath: mesh.sdsCaPath, caSerial: mesh.caSerial, identities: identities.map(identityJson) }, null, 2));
    return 0;
  }
  const rows = table(["name", "SPIFFE ID", "serial", "not after"]);
  for (const i of identities) rows.push([i.name, i.spiffeId, i.serial, i.notAfter.toISOString()]);
  console.log(rows.toString());
  console.log(`CA ${mesh.caPath} (serial ${mesh.caSerial}); Envoy reads ${mesh.sdsCaPath} and <name>/sds-cert.yaml`);
  return 0;
}

/** `taskmesh certs rotate [name...]`: new key pairs under the same CA, published to Envoy through SDS; prints old → new serials. */
export async function certsRotate(names: readonly string[], opts: CertsOptions): Promise<number> {
  const { rotated, identities } = await rotateMeshCerts(STATE_DIR, names, certOptions(opts));
  if (opts.json) {
    console.log(JSON.stringify(rotated.map((r) => ({ ...identityJson(identities[r.name]!), from: r.from ?? null })), null, 2));
    return 0;
  }
  const rows = table(["name", "old serial", "new serial", "not after"]);
  for (const r of rotated) rows.push([r.name, r.from ?? "(none)", `→ ${r.to}`, identities[r.name]!.notAfter.toISOString()]);
  console.log(rows.toString());
  return 0;
}
