import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium, type Browser } from "playwright-core";
import { aptInstall } from "@taskmesh/local/provision/apt";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const CHROMIUM = "/usr/bin/chromium";

/** Where browser tests write their screenshots (one PNG per page they check). */
export const SCREENSHOT_DIR = process.env.TASKMESH_SCREENSHOT_DIR ?? join(ROOT, "test-results", "screenshots");

let installing: Promise<void> | undefined;

/** Debian's Chromium, installed with apt-get (as root, `apt-get update` first) when missing; its path. */
export async function ensureChromium(): Promise<string> {
  if (existsSync(CHROMIUM)) return CHROMIUM;
  if (process.getuid?.() !== 0) throw new Error(`${CHROMIUM} is missing: apt-get install chromium (as root)`);
  installing ??= aptInstall("chromium");
  await installing;
  if (!existsSync(CHROMIUM)) throw new Error(`apt-get installed chromium but ${CHROMIUM} is missing`);
  return CHROMIUM;
}

/**
 * Headless Chromium through playwright-core, with the flags this machine's
 * closed network needs (no background connections to Google's hosts).
 */
export async function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: await ensureChromium(),
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
}

/** `name`.png in {@link SCREENSHOT_DIR}. */
export function screenshotPath(name: string): string {
  mkdirSync(SCREENSHOT_DIR, { recursive: true });
  return join(SCREENSHOT_DIR, `${name}.png`);
}

/**
 * A built jaeger-ui folder for the tests: TASKMESH_JAEGER_UI_DIR when set;
 * else `shared/jaeger-ui` beside this checkout, or beside the checkout it was
 * cloned from (a clean clone in another folder, as CI makes); undefined when
 * none holds an index.html.
 */
export function jaegerUiForTests(): string | undefined {
  const candidates = [process.env.TASKMESH_JAEGER_UI_DIR, join(ROOT, "..", "shared", "jaeger-ui")];
  try {
    const origin = execFileSync("git", ["config", "--get", "remote.origin.url"], { cwd: ROOT, encoding: "utf8" }).trim();
    if (origin.startsWith("/")) candidates.push(join(origin, "..", "shared", "jaeger-ui"));
  } catch {
    // Not a clone of a local folder.
  }
  return candidates.filter((c): c is string => !!c).map((c) => resolve(c)).find((c) => existsSync(join(c, "index.html")));
}
