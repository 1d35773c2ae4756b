import { X509Certificate, createPrivateKey, createPublicKey } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { parse } from "yaml";
import { CA_SECRET, CERT_SECRET, ensureMeshCerts, MESH_IDENTITIES, rotateMeshCerts, type MeshCerts } from "@taskmesh/local/certs";

const SECRET_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";

const stateDir = mkdtempSync(join(tmpdir(), "taskmesh-certs-"));
let mesh: MeshCerts;

beforeAll(async () => {
  mesh = await ensureMeshCerts(stateDir);
});
afterAll(() => rmSync(stateDir, { recursive: true, force: true }));

const mode = (path: string): number => statSync(path).mode & 0o777;
const cert = (path: string): X509Certificate => new X509Certificate(readFileSync(path));

interface SdsFile {
  resources: {
    "@type": string;
    name: string;
    tls_certificate?: { certificate_chain: { filename: string }; private_key: { filename: string } };
    validation_context?: { trusted_ca: { filename: string } };
  }[];
}
const sds = (path: string): SdsFile => parse(readFileSync(path, "utf8")) as SdsFile;

describe("mesh certificates", () => {
  it("makes a P-256 CA, 10 years, CA:true, that signs only certificates and CRLs", () => {
    expect(mesh.caPath).toBe(join(stateDir, "certs", "ca.pem"));
    expect(mesh.caKeyPath).toBe(join(stateDir, "certs", "ca.key.pem"));
    const ca = cert(mesh.caPath);
    expect(ca.ca).toBe(true);
    expect(ca.subject).toContain("CN=taskmesh mesh CA");
    expect(ca.checkIssued(ca)).toBe(true);
    const years = (Date.parse(ca.validTo) - Date.now()) / (365.25 * 24 * 3_600_000);
    expect(years).toBeGreaterThan(9.9);
    expect(years).toBeLessThan(10.1);
    expect(ca.publicKey.asymmetricKeyDetails?.namedCurve).toBe("prime256v1");
    expect(ca.checkPrivateKey(createPrivateKey(readFileSync(mesh.caKeyPath)))).toBe(true);
    const parsed = new x509.X509Certificate(readFileSync(mesh.caPath, "utf8"));
    const constraints = parsed.getExtension(x509.BasicConstraintsExtension)!;
    expect({ ca: constraints.ca, critical: constraints.critical }).toEqual({ ca: true, critical: true });
    const usage = parsed.getExtension(x509.KeyUsagesExtension)!;
    expect(usage.usages).toBe(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign);
  });

  it("issues each participant a 24 h P-256 leaf signed by the CA, with its SPIFFE ID and server+client auth", () => {
    const ca = cert(mesh.caPath);
    expect(Object.keys(mesh.identities)).toEqual([...MESH_IDENTITIES]);
    for (const name of MESH_IDENTITIES) {
      const id = mesh.identities[name]!;
      expect(id.spiffeId).toBe(`spiffe://taskmesh.local/${name}`);
      expect(id.certPath).toBe(join(stateDir, "certs", name, "cert.pem"));
      expect(id.keyPath).toBe(join(stateDir, "certs", name, "key.pem"));
      const leaf = cert(id.certPath);
      expect(leaf.ca).toBe(false);
      expect(leaf.checkIssued(ca)).toBe(true);
      expect(leaf.verify(ca.publicKey)).toBe(true);
      expect(leaf.subjectAltName).toBe(`URI:spiffe://taskmesh.local/${name}, DNS:localhost, IP Address:127.0.0.1`);
      expect(leaf.keyUsage).toEqual(expect.arrayContaining(["1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"])); // serverAuth, clientAuth
      expect(leaf.publicKey.asymmetricKeyDetails?.namedCurve).toBe("prime256v1");
      expect(leaf.checkPrivateKey(createPrivateKey(readFileSync(id.keyPath)))).toBe(true);
      const usage = new x509.X509Certificate(readFileSync(id.certPath, "utf8")).getExtension(x509.KeyUsagesExtension)!;
      expect(usage.usages & x509.KeyUsageFlags.digitalSignature).toBeTruthy();
      expect(usage.usages & x509.KeyUsageFlags.keyCertSign).toBeFalsy();
      expect(leaf.serialNumber.toLowerCase()).toBe(id.serial);
      expect(id.serial).toMatch(/^[0-9a-f]{32}$/);
      expect(new Date(leaf.validTo).getTime()).toBe(id.notAfter.getTime());
      const hours = (id.notAfter.getTime() - Date.now()) / 3_600_000;
      expect(hours).toBeGreaterThan(23.9);
      expect(hours).toBeLessThanOrEqual(24);
      // The chain is the leaf alone: the CA is separate.
      expect(readFileSync(id.certPath, "utf8").match(/BEGIN CERTIFICATE/g)).toHaveLength(1);
    }
    const serials = new Set(Object.values(mesh.identities).map((i) => i.serial));
    expect(serials.size).toBe(MESH_IDENTITIES.length);
  });

  it("keeps every file 0600 and every folder 0700", () => {
    const walk = (dir: string): void => {
      expect(mode(dir), dir).toBe(0o700);
      for (const entry of readdirSync(dir, { withFileTypes: true })) {
        const path = join(dir, entry.name);
        if (entry.isDirectory()) walk(path);
        else expect(mode(path), path).toBe(0o600);
      }
    };
    walk(mesh.dir);
    // No temporary file is left behind.
    expect(readdirSync(mesh.dir, { recursive: true }).filter((f) => String(f).endsWith(".tmp"))).toEqual([]);
  });

  it("writes SDS files that name the secrets and point at existing files with the same contents", () => {
    const caFile = sds(mesh.sdsCaPath);
    expect(mesh.sdsCaPath).toBe(join(stateDir, "certs", "sds-ca.yaml"));
    expect(caFile.resources).toHaveLength(1);
    expect(caFile.resources[0]).toEqual({ "@type": SECRET_TYPE, name: CA_SECRET, validation_context: { trusted_ca: { filename: mesh.caPath } } });
    for (const id of Object.values(mesh.identities)) {
      const file = sds(id.sdsPath);
      expect(file.resources).toHaveLength(1);
      const secret = file.resources[0]!;
      expect(secret["@type"]).toBe(SECRET_TYPE);
      expect(secret.name).toBe(CERT_SECRET);
      const { certificate_chain, private_key } = secret.tls_certificate!;
      expect(certificate_chain.filename.startsWith("/")).toBe(true);
      expect(readFileSync(certificate_chain.filename, "utf8")).toBe(readFileSync(id.certPath, "utf8"));
      expect(readFileSync(private_key.filename, "utf8")).toBe(readFileSync(id.keyPath, "utf8"));
    }
  });

  it("reuses everything on a second ensure", async () => {
    const again = await ensureMeshCerts(stateDir);
    expect(again.caSerial).toBe(mesh.caSerial);
    for (const name of MESH_IDENTITIES) expect(again.identities[name]!.serial).toBe(mesh.identities[name]!.serial);
    expect(readFileSync(again.caPath, "utf8")).toBe(readFileSync(mesh.caPath, "utf8"));
  });

  it("rotates: new serial and key, SDS file swapped, same CA; keeps only the previous generation besides the new one", async () => {
    const before = mesh.identities.edge!;
    const oldKey = readFileSync(before.keyPath, "utf8");
    const oldSds = readFileSync(before.sdsPath, "utf8");
    const caBefore = readFileSync(mesh.caPath, "utf8");

    const first = await rotateMeshCerts(stateDir, ["edge"]);
    expect(first.rotated).toEqual([{ name: "edge", from: before.serial, to: first.identities.edge!.serial }]);
    expect(first.identities.edge!.serial).not.toBe(before.serial);
    expect(Object.keys(first.identities)).toEqual(["edge"]);
    expect(readFileSync(mesh.caPath, "utf8")).toBe(caBefore);
    expect(first.caSerial).toBe(mesh.caSerial);
    expect(readFileSync(before.keyPath, "utf8")).not.toBe(oldKey);
    expect(readFileSync(before.sdsPath, "utf8")).not.toBe(oldSds);
    const leaf = cert(before.certPath);
    expect(leaf.serialNumber.toLowerCase()).toBe(first.identities.edge!.serial);
    expect(leaf.verify(cert(mesh.caPath).publicKey)).toBe(true);
    expect(sds(before.sdsPath).resources[0]!.tls_certificate!.certificate_chain.filename).toBe(join(mesh.dir, "edge", `cert-${first.identities.edge!.serial}.pem`));

    const second = await rotateMeshCerts(stateDir, ["edge"]);
    const generations = readdirSync(join(mesh.dir, "edge")).filter((f) => /^(cert|key)-/.test(f)).sort();
    const [a, b] = [first.identities.edge!.serial, second.identities.edge!.serial];
    expect(generations).toEqual([`cert-${a}.pem`, `cert-${b}.pem`, `key-${a}.pem`, `key-${b}.pem`].sort());
    expect(existsSync(join(mesh.dir, "edge", `cert-${before.serial}.pem`))).toBe(false);
    // Others are untouched.
    expect((await ensureMeshCerts(stateDir)).identities.ledger!.serial).toBe(mesh.identities.ledger!.serial);
  });

  it("rotates every identity without names, and refuses an unknown one", async () => {
    const before = await ensureMeshCerts(stateDir);
    const all = await rotateMeshCerts(stateDir);
    expect(all.rotated.map((r) => r.name)).toEqual([...MESH_IDENTITIES]);
    for (const r of all.rotated) expect(r.from).toBe(before.identities[r.name]!.serial);
    await expect(rotateMeshCerts(stateDir, ["nope"])).rejects.toThrow(/no mesh identity nope/);
    await expect(ensureMeshCerts(stateDir, ["../x"])).rejects.toThrow(/not a mesh identity name/);
  });

  it("renews an identity that ends within the hour, and only that one", async () => {
    const config = (await ensureMeshCerts(stateDir)).identities.config!.serial;
    const short = await rotateMeshCerts(stateDir, ["worker"], { leafValidityMs: 30 * 60_000 });
    const serial = short.identities.worker!.serial;
    const after = await ensureMeshCerts(stateDir);
    expect(after.identities.worker!.serial).not.toBe(serial);
    expect(after.identities.worker!.notAfter.getTime() - Date.now()).toBeGreaterThan(23 * 3_600_000);
    expect(after.identities.config!.serial).toBe(config);
  });

  it("makes a new CA when its key is gone, and reissues every identity under it", async () => {
    const dir = mkdtempSync(join(tmpdir(), "taskmesh-certs-ca-"));
    try {
      const first = await ensureMeshCerts(dir, ["config"]);
      rmSync(first.caKeyPath);
      const second = await ensureMeshCerts(dir, ["config"]);
      expect(second.caSerial).not.toBe(first.caSerial);
      expect(second.identities.config!.serial).not.toBe(first.identities.config!.serial);
      expect(cert(second.identities.config!.certPath).verify(createPublicKey(readFileSync(second.caPath)))).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("writes nothing outside the state directory's certs/", () => {
    expect(readdirSync(stateDir)).toEqual(["certs"]);
  });
});

describe("mesh certificates in a new state directory", () => {
  it("leaves the state directory's own mode alone (other processes share it)", async () => {
    const parent = mkdtempSync(join(tmpdir(), "taskmesh-certs-parent-"));
    try {
      const state = join(parent, ".taskmesh");
      await ensureMeshCerts(state, ["config"]);
      const reference = join(parent, "reference");
      mkdirSync(reference);
      expect(mode(state)).toBe(mode(reference));
      expect(mode(join(state, "certs"))).toBe(0o700);
    } finally {
      rmSync(parent, { recursive: true, force: true });
    }
  });
});

describe("mesh certificates, concurrently", () => {
  it("serialises callers: two at once end with one CA and one generation each identity", async () => {
    const dir = mkdtempSync(join(tmpdir(), "taskmesh-certs-lock-"));
    try {
      const [a, b] = await Promise.all([ensureMeshCerts(dir, ["config"]), ensureMeshCerts(dir, ["config"])]);
      expect(b.caSerial).toBe(a.caSerial);
      expect(b.identities.config!.serial).toBe(a.identities.config!.serial);
      expect(existsSync(join(dir, "certs", ".lock"))).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
