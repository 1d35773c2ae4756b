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
import { X509Certificate, createPrivateKey, randomBytes, type webcrypto } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import type * as X509 from "@peculiar/x509";
import { parse, stringify } from "yaml";
import { alive } from "./supervisor.js";
import { identities, loadTopology } from "../mesh/topology.js";

/** Every mesh participant that gets an identity: the services of deploy/topology.yaml and the edge Envoy. */
export const MESH_IDENTITIES: readonly string[] = Object.freeze(identities(loadTopology()));
/** The SPIFFE trust domain of the mesh. */
export const TRUST_DOMAIN = "taskmesh.local";
/** The SDS secret names Envoy configs refer to. */
export const CERT_SECRET = "mesh-cert";
export const CA_SECRET = "mesh-ca";

const SECRET_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";
const EC = { name: "ECDSA", namedCurve: "P-256" } as const;
const SIGNING = { name: "ECDSA", hash: "SHA-256" } as const;
const CA_NAME = "CN=taskmesh mesh CA, O=taskmesh";
const CA_VALIDITY_MS = 10 * 365.25 * 24 * 3_600_000;
/** Certificates start a little in the past, so a clock a bit behind does not reject a fresh one. */
const BACKDATE_MS = 5 * 60_000;

let library: Promise<typeof X509> | undefined;

/**
 * @peculiar/x509, loaded on first use: it needs a Reflect metadata polyfill
 * installed before it loads (its README), and Node's webcrypto as provider.
 */
function loadX509(): Promise<typeof X509> {
  library ??= (async () => {
    await import("reflect-metadata");
    const x509 = await import("@peculiar/x509");
    x509.cryptoProvider.set(crypto);
    return x509;
  })();
  return library;
}

/** Options of {@link ensureMeshCerts} and {@link rotateMeshCerts}. */
export interface MeshCertOptions {
  /** How long a newly issued identity certificate is valid, in ms. @default 24 h */
  readonly leafValidityMs?: number;
  /** `ensure` renews an identity whose certificate ends within this many ms. @default 1 h */
  readonly renewBeforeMs?: number;
  /** The clock. @default the system clock */
  readonly now?: () => Date;
}

type CertConfig = Required<MeshCertOptions>;

/** Fills the defaults of {@link MeshCertOptions}. */
function certConfig(options: MeshCertOptions): Readonly<CertConfig> {
  const config = { leafValidityMs: 24 * 3_600_000, renewBeforeMs: 3_600_000, now: () => new Date(), ...options };
  if (!(config.leafValidityMs > 0)) throw new Error(`leafValidityMs must be positive, got ${config.leafValidityMs}`);
  return Object.freeze(config);
}

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

/** The SPIFFE ID of a mesh participant. */
export function spiffeId(name: string): string {
  return `spiffe://${TRUST_DOMAIN}/${name}`;
}

/**
 * The `sds_config` an Envoy config uses for one of these SDS files: the file,
 * reloaded whenever an entry of its folder is moved into place (Envoy's
 * `watched_directory`), which is how a rotation reaches a running Envoy.
 */
export function sdsConfigSource(sdsPath: string): { path_config_source: { path: string; watched_directory: { path: string } } } {
  return { path_config_source: { path: sdsPath, watched_directory: { path: dirname(sdsPath) } } };
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

interface Ca {
  readonly dir: string;
  readonly certPath: string;
  readonly keyPath: string;
  readonly sdsPath: string;
  readonly cert: X509Certificate;
  readonly signer: X509.X509Certificate;
  readonly key: webcrypto.CryptoKey;
}

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

/** A folder of ours: 0700 (created so, or tightened). Its parents keep the default mode: others (Postgres) share the state dir. */
function privateDir(dir: string): void {
  mkdirSync(dirname(dir), { recursive: true });
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
}

/**
 * Runs `run` holding `<certs>/.lock`, so two commands (`up` and `certs
 * rotate`, say) never make two CAs or interleave a generation. A lock whose
 * process is gone is taken over; a live one is waited for, up to 10 s.
 */
async function withLock<T>(dir: string, run: () => Promise<T>): Promise<T> {
  privateDir(dir);
  const lock = join(dir, ".lock");
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      writeFileSync(lock, String(process.pid), { mode: 0o600, flag: "wx" });
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      const holder = Number(readFileSync(lock, "utf8").trim() || Number.NaN);
      if (!(holder > 0) || !alive(holder)) {
        rmSync(lock, { force: true });
        continue;
      }
      if (Date.now() > deadline) throw new Error(`the mesh certificates are being changed by pid ${holder} (lock ${lock})`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  try {
    return await run();
  } finally {
    rmSync(lock, { force: true });
  }
}

/** Writes a 0600 file through a temporary file in the same folder and a rename: readers see the old file or the new one. */
function writeAtomic(path: string, data: string): void {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`);
  try {
    writeFileSync(tmp, data, { mode: 0o600, flag: "wx" });
    renameSync(tmp, path);
  } catch (error) {
    rmSync(tmp, { force: true });
    throw error;
  }
}

/** Writes a file only when its content differs (a rewrite would make watching Envoys reload for nothing). */
function writeIfChanged(path: string, data: string): void {
  if (existsSync(path) && readFileSync(path, "utf8") === data) return;
  writeAtomic(path, data);
}

/** PEM with \n line ends and one final newline. */
function pem(der: ArrayBuffer, label: string): string {
  const body = Buffer.from(der).toString("base64").replace(/.{1,64}/g, "$&\n");
  return `-----BEGIN ${label}-----\n${body}-----END ${label}-----\n`;
}

/** A random positive 16-byte serial (the top byte in 0x40..0x7f: positive, and no leading zero to trim). */
function newSerial(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0]! & 0x7f) | 0x40;
  return bytes.toString("hex");
}

function sdsFile(secret: Record<string, unknown>): string {
  return stringify({ resources: [{ "@type": SECRET_TYPE, ...secret }] });
}

/** The CA from disk when it is whole, unexpired and its key matches; else a new one (every identity is then reissued). */
async function ensureCa(dir: string, config: CertConfig): Promise<Ca> {
  const x509 = await loadX509();
  privateDir(dir);
  const certPath = join(dir, "ca.pem");
  const keyPath = join(dir, "ca.key.pem");
  const sdsPath = join(dir, "sds-ca.yaml");
  let ca = await loadCa(dir, certPath, keyPath, sdsPath, config.now());
  if (!ca) {
    const keys = await crypto.subtle.generateKey(EC, true, ["sign", "verify"]);
    const now = config.now().getTime();
    const cert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: newSerial(),
      name: CA_NAME,
      notBefore: new Date(now - BACKDATE_MS),
      notAfter: new Date(now + CA_VALIDITY_MS),
      signingAlgorithm: SIGNING,
      keys,
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      ],
    });
    // Key first: a ca.pem on disk always has its key beside it.
    writeAtomic(keyPath, pem(await crypto.subtle.exportKey("pkcs8", keys.privateKey), "PRIVATE KEY"));
    writeAtomic(certPath, pem(cert.rawData, "CERTIFICATE"));
    ca = await loadCa(dir, certPath, keyPath, sdsPath, config.now());
    if (!ca) throw new Error(`the new mesh CA in ${dir} does not load back`);
  }
  writeIfChanged(sdsPath, sdsFile({ name: CA_SECRET, validation_context: { trusted_ca: { filename: certPath } } }));
  return ca;
}

async function loadCa(dir: string, certPath: string, keyPath: string, sdsPath: string, now: Date): Promise<Ca | undefined> {
  try {
    const certPem = readFileSync(certPath, "utf8");
    const keyPem = readFileSync(keyPath, "utf8");
    const cert = new X509Certificate(certPem);
    if (!cert.ca || new Date(cert.validTo) <= now || !cert.checkPrivateKey(createPrivateKey(keyPem))) return undefined;
    const der = createPrivateKey(keyPem).export({ type: "pkcs8", format: "der" });
    const key = await crypto.subtle.importKey("pkcs8", der, EC, false, ["sign"]);
    const x509 = await loadX509();
    return { dir, certPath, keyPath, sdsPath, cert, signer: new x509.X509Certificate(certPem), key };
  } catch {
    return undefined;
  }
}

function identityPaths(ca: Ca, name: string): { dir: string; certPath: string; keyPath: string; sdsPath: string } {
  const dir = join(ca.dir, name);
  return { dir, certPath: join(dir, "cert.pem"), keyPath: join(dir, "key.pem"), sdsPath: join(dir, "sds-cert.yaml") };
}

/** The generation the SDS file points at, when its files exist, were issued by this CA and match each other. */
function readLeaf(ca: Ca, name: string): { serial: string; cert: X509Certificate; certFile: string; keyFile: string } | undefined {
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
function currentIdentity(ca: Ca, name: string, config: CertConfig): MeshIdentity | undefined {
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
async function issue(ca: Ca, name: string, config: CertConfig): Promise<MeshIdentity> {
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
