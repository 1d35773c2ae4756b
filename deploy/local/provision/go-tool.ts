import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { execa } from "execa";
import { cacheDir, MissingPrerequisite, pinned } from "./versions.js";

/**
 * The path of a pinned Go program (`go` key in versions.json), built once
 * with `go install` into its cache folder. Throws MissingPrerequisite when Go
 * is not installed.
 */
export async function goTool(name: string, signal?: AbortSignal): Promise<string> {
  const { go, version } = pinned(name);
  if (!go) throw new Error(`${name} is not a Go tool in versions.json`);
  const dir = cacheDir(name, version);
  const binary = join(dir, go.slice(go.lastIndexOf("/") + 1));
  if (existsSync(binary)) return binary;
  try {
    await execa("go", ["version"], { ...(signal ? { cancelSignal: signal } : {}) });
  } catch {
    throw new MissingPrerequisite(`${name} is built with Go, which is missing: install Go 1.22 or later (Debian: apt-get install golang)`);
  }
  mkdirSync(dir, { recursive: true });
  await execa("go", ["install", `${go}@${version}`], { env: { GOBIN: dir }, ...(signal ? { cancelSignal: signal } : {}) });
  if (!existsSync(binary)) throw new Error(`go install ${go}@${version} did not produce ${binary}`);
  return binary;
}
