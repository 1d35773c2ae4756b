/**
 * The mesh CA (`ca.pem`, `ca.key.pem`, `sds-ca.yaml`): created, or loaded
 * back when whole, unexpired and matching its key; and the key algorithm,
 * signing parameters and serials it shares with the identities it issues.
 */
import { X509Certificate, createPrivateKey, randomBytes, type webcrypto } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type * as X509 from "@peculiar/x509";
import { CA_SECRET, pem, privateDir, sdsFile, writeAtomic, writeIfChanged } from "./cert-files.js";
import type { CertConfig } from "./cert-options.js";

/** The key algorithm of the CA and of every identity. */
export const EC = { name: "ECDSA", namedCurve: "P-256" } as const;
/** How the CA signs certificates. */
export const SIGNING = { name: "ECDSA", hash: "SHA-256" } as const;
const CA_NAME = "CN=taskmesh mesh CA, O=taskmesh";
const CA_VALIDITY_MS = 10 * 365.25 * 24 * 3_600_000;
/** Certificates start a little in the past, so a clock a bit behind does not reject a fresh one. */
export const BACKDATE_MS = 5 * 60_000;

let library: Promise<typeof X509> | undefined;

/**
 * @peculiar/x509, loaded on first use: it needs a Reflect metadata polyfill
 * installed before it loads (its README), and Node's webcrypto as provider.
 */
export function loadX509(): Promise<typeof X509> {
  library ??= (async () => {
    await import("reflect-metadata");
    const x509 = await import("@peculiar/x509");
    x509.cryptoProvider.set(crypto);
    return x509;
  })();
  return library;
}

/** The mesh CA as loaded: its files, its certificate (node and @peculiar/x509 views) and its signing key. */
export interface Ca {
  readonly dir: string;
  readonly certPath: string;
  readonly keyPath: string;
  readonly sdsPath: string;
  readonly cert: X509Certificate;
  readonly signer: X509.X509Certificate;
  readonly key: webcrypto.CryptoKey;
}

/** A random positive 16-byte serial (the top byte in 0x40..0x7f: positive, and no leading zero to trim). */
export function newSerial(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0]! & 0x7f) | 0x40;
  return bytes.toString("hex");
}

/** The CA from disk when it is whole, unexpired and its key matches; else a new one (every identity is then reissued). */
export async function ensureCa(dir: string, config: CertConfig): Promise<Ca> {
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
