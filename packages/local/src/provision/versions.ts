import { existsSync, readFileSync, renameSync, rmSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { projectRoot } from "@taskmesh/kit/project-root";

/** One pinned component in `deploy/versions.json`, with where it comes from. */
export interface PinnedComponent {
  readonly version: string;
  /** A Go package built with `go install`. */
  readonly go?: string;
  /** Maven coordinates `group:artifact`. */
  readonly maven?: string;
  /** A PyPI package. */
  readonly pypi?: string;
  /** More PyPI requirements installed beside it (`name==version`). */
  readonly with?: readonly string[];
  /** A Debian package. */
  readonly debian?: string;
  /** An npm package (the component comes with `npm ci`). */
  readonly npm?: string;
  /** The container image of the same version, for compose and Kubernetes (deploy/compose, deploy/k8s). */
  readonly image?: string;
  /** The image an operator runs it from, where that differs (CloudNativePG's Postgres). */
  readonly operandImage?: string;
  /** A Go module of this repository built into the cache (scripts/go-tools.mjs), versioned by its sources. */
  readonly goModule?: string;
  /** A Go module whose files are used as they are (`go mod download`): `crds` names the CustomResourceDefinitions in it. */
  readonly goModuleFiles?: string;
  readonly crds?: readonly string[];
  /** Maven coordinates `group:artifact` of the generator that writes the CRDs of a `maven` API jar (Strimzi's). */
  readonly crdGenerator?: string;
  /** Built by `scripts/bootstrap.mjs` before tests (test tools). */
  readonly bootstrap?: boolean;
}

/** The repository root. */
export const ROOT = projectRoot(import.meta.url);

/** Every pinned version, from the one file that pins them. */
export function pinned(name: string): PinnedComponent {
  const all = JSON.parse(readFileSync(join(ROOT, "deploy/versions.json"), "utf8")) as Record<string, PinnedComponent>;
  const component = all[name];
  if (!component) throw new Error(`deploy/versions.json pins no ${name}`);
  return component;
}

/** `${XDG_CACHE_HOME:-~/.cache}/taskmesh/<name>-<version>`: where a provisioned component lives, outside the clone. */
export function cacheDir(name: string, version: string): string {
  return join(process.env.XDG_CACHE_HOME || join(homedir(), ".cache"), "taskmesh", `${name}-${version}`);
}

/** A missing prerequisite: its message is the one line that says what to install. */
export class MissingPrerequisite extends Error {
  override readonly name = "MissingPrerequisite";
}

/**
 * Moves a finished provisioning folder (`work`, holding the `marker` file
 * written last) to `home` in one rename, so no reader ever takes a half-made
 * install for a finished one; a leftover unfinished `home` is replaced, and
 * a concurrent provisioner that finished first wins.
 */
export function publishInstall(work: string, home: string, marker: string): void {
  if (existsSync(home) && !existsSync(join(home, marker))) rmSync(home, { recursive: true, force: true });
  try {
    renameSync(work, home);
  } catch (error) {
    if (!existsSync(join(home, marker))) throw error;
  }
}
