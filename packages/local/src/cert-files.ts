/**
 * The files under `<stateDir>/certs/`: their formats (PEM, Envoy SDS
 * secrets) and how they are written (private folders, atomic writes, and
 * the lock that keeps two commands from changing them at once).
 */
import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { stringify } from "yaml";
import { alive } from "./supervisor.js";

/** The SDS secret names Envoy configs refer to. */
export const CERT_SECRET = "mesh-cert";
export const CA_SECRET = "mesh-ca";

const SECRET_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";

/**
 * The `sds_config` an Envoy config uses for one of these SDS files: the file,
 * reloaded whenever an entry of its folder is moved into place (Envoy's
 * `watched_directory`), which is how a rotation reaches a running Envoy.
 */
export function sdsConfigSource(sdsPath: string): { path_config_source: { path: string; watched_directory: { path: string } } } {
  return { path_config_source: { path: sdsPath, watched_directory: { path: dirname(sdsPath) } } };
}

/** A folder of ours: 0700 (created so, or tightened). Its parents keep the default mode: others (Postgres) share the state dir. */
export function privateDir(dir: string): void {
  mkdirSync(dirname(dir), { recursive: true });
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
}

/**
 * Runs `run` holding `<certs>/.lock`, so two commands (`up` and `certs
 * rotate`, say) never make two CAs or interleave a generation. A lock whose
 * process is gone is taken over; a live one is waited for, up to 10 s.
 */
export async function withLock<T>(dir: string, run: () => Promise<T>): Promise<T> {
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
export function writeAtomic(path: string, data: string): void {
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
export function writeIfChanged(path: string, data: string): void {
  if (existsSync(path) && readFileSync(path, "utf8") === data) return;
  writeAtomic(path, data);
}

/** PEM with \n line ends and one final newline. */
export function pem(der: ArrayBuffer, label: string): string {
  const body = Buffer.from(der).toString("base64").replace(/.{1,64}/g, "$&\n");
  return `-----BEGIN ${label}-----\n${body}-----END ${label}-----\n`;
}

/** An SDS file holding one Envoy Secret. */
export function sdsFile(secret: Record<string, unknown>): string {
  return stringify({ resources: [{ "@type": SECRET_TYPE, ...secret }] });
}
