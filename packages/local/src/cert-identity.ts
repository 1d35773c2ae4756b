/**
 * One mesh participant's SPIFFE identity under `<name>/`: the generation its
 * SDS file points at, checked against the CA; a new generation issued (with
 * its SPIFFE URI SAN) and swapped in by rename; old generations pruned.
 */
import { X509Certificate, createPrivateKey } from "node:crypto";
import { readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";
import { BACKDATE_MS, EC, SIGNING, loadX509, newSerial, type Ca } from "./cert-authority.js";
import { CERT_SECRET, pem, privateDir, sdsFile, writeAtomic, writeIfChanged } from "./cert-files.js";
import type { CertConfig } from "./cert-options.js";

/** The SPIFFE trust domain of the mesh. */
export const TRUST_DOMAIN = "taskmesh.local";

/** One identity's certificate as the mesh uses it. */
export interface MeshIdentity {
  readonly name: string;
  /** `spiffe://taskmesh.local/<name>`, the certificate's URI SAN (what RBAC matches). */
  readonly spiffeId: string;
  /** `<name>/cert.pem` and `key.pem`: the current generation, for tools (curl, grpcurl, node:tls). */
  readonly certPath: string;
  readonly keyPath: string;
  /** `<name>/sds-cert.yaml`: the SDS file Envoy reads (Secret `mesh-cert`). */
  readonly sdsPath: string;
  /** The certificate's serial number, lowercase hex. */
  readonly serial: string;
  readonly notAfter: Date;
}

/** The SPIFFE ID of a mesh participant. */
export function spiffeId(name: string): string {
  return `spiffe://${TRUST_DOMAIN}/${name}`;
}

function identityPaths(ca: Ca, name: string): { dir: string; certPath: string; keyPath: string; sdsPath: string } {
  const dir = join(ca.dir, name);
  return { dir, certPath: join(dir, "cert.pem"), keyPath: join(dir, "key.pem"), sdsPath: join(dir, "sds-cert.yaml") };
}

/** The generation the SDS file points at, when its files exist, were issued by this CA and match each other. */
export function readLeaf(ca: Ca, name: string): { serial: string; cert: X509Certificate; certFile: string; keyFile: string } | undefined {
  const { sdsPath } = identityPaths(ca, name);
  try {
    const doc = parse(readFileSync(sdsPath, "utf8")) as { resources?: { tls_certificate?: { certificate_chain?: { filename?: string }; private_key?: { filename?: string } } }[] };
    const tls = doc.resources?.[0]?.tls_certificate;
    const certFile = tls?.certificate_chain?.filename;
    const keyFile = tls?.private_key?.filename;
    if (!certFile || !keyFile) return undefined;
    const cert = new X509Certificate(readFileSync(certFile));
    if (!cert.checkIssued(ca.cert) || !cert.verify(ca.cert.publicKey) || !cert.checkPrivateKey(createPrivateKey(readFileSync(keyFile)))) return undefined;
    return { serial: cert.serialNumber.toLowerCase(), cert, certFile, keyFile };
  } catch {
    return undefined;
  }
}

/** The identity as it is on disk, or undefined when it must be (re)issued: missing, broken, another CA's, or ending within renewBeforeMs. */
export function currentIdentity(ca: Ca, name: string, config: CertConfig): MeshIdentity | undefined {
  const leaf = readLeaf(ca, name);
  if (!leaf) return undefined;
  const notAfter = new Date(leaf.cert.validTo);
  if (notAfter.getTime() - config.now().getTime() <= config.renewBeforeMs) return undefined;
  const paths = identityPaths(ca, name);
  // The copies for tools are refreshed if someone removed or changed them.
  writeIfChanged(paths.certPath, readFileSync(leaf.certFile, "utf8"));
  writeIfChanged(paths.keyPath, readFileSync(leaf.keyFile, "utf8"));
  return { name, spiffeId: spiffeId(name), certPath: paths.certPath, keyPath: paths.keyPath, sdsPath: paths.sdsPath, serial: leaf.serial, notAfter };
}

/**
 * Issues a new generation for `name`: its key and certificate under new
 * names, then the SDS file swapped to them, then the copies for tools; then
 * removes generations older than the previous one.
 */
export async function issue(ca: Ca, name: string, config: CertConfig): Promise<MeshIdentity> {
  const x509 = await loadX509();
  const paths = identityPaths(ca, name);
  privateDir(paths.dir);
  const previous = readLeaf(ca, name)?.serial;
  const keys = await crypto.subtle.generateKey(EC, true, ["sign", "verify"]);
  const serial = newSerial();
  const now = config.now().getTime();
  const notAfter = new Date(Math.floor((now + config.leafValidityMs) / 1000) * 1000); // certificates hold whole seconds
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial,
    subject: `CN=${name}, O=taskmesh`,
    issuer: ca.signer.subject,
    notBefore: new Date(now - BACKDATE_MS),
    notAfter,
    signingAlgorithm: SIGNING,
    publicKey: keys.publicKey,
    signingKey: ca.key,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
      new x509.SubjectAlternativeNameExtension([
        { type: "url", value: spiffeId(name) },
        { type: "dns", value: "localhost" },
        { type: "ip", value: "127.0.0.1" },
      ]),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(ca.signer),
    ],
  });
  const certPem = pem(cert.rawData, "CERTIFICATE");
  const keyPem = pem(await crypto.subtle.exportKey("pkcs8", keys.privateKey), "PRIVATE KEY");
  const certFile = join(paths.dir, `cert-${serial}.pem`);
  const keyFile = join(paths.dir, `key-${serial}.pem`);
  writeAtomic(keyFile, keyPem);
  writeAtomic(certFile, certPem);
  writeAtomic(paths.sdsPath, sdsFile({
    name: CERT_SECRET,
    tls_certificate: { certificate_chain: { filename: certFile }, private_key: { filename: keyFile } },
  }));
  writeAtomic(paths.certPath, certPem);
  writeAtomic(paths.keyPath, keyPem);
  prune(paths.dir, new Set([serial, ...(previous ? [previous] : [])]));
  return { name, spiffeId: spiffeId(name), certPath: paths.certPath, keyPath: paths.keyPath, sdsPath: paths.sdsPath, serial, notAfter };
}

/** Removes the generations' files whose serial is not kept (the current and the previous one stay). */
function prune(dir: string, keep: ReadonlySet<string>): void {
  for (const file of readdirSync(dir)) {
    const serial = /^(?:cert|key)-([0-9a-f]+)\.pem$/.exec(file)?.[1];
    if (serial && !keep.has(serial)) rmSync(join(dir, file), { force: true });
  }
}
