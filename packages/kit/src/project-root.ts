import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** Whether `dir` holds the project's own package.json: the one naming the workspaces (packages/*, services/*). */
function isProjectRoot(dir: string): boolean {
  const file = join(dir, "package.json");
  if (!existsSync(file)) return false;
  return "workspaces" in (JSON.parse(readFileSync(file, "utf8")) as object);
}

/**
 * The project's root folder (the nearest one above `moduleUrl` whose
 * `package.json` names the workspaces, so never a package's own folder),
 * from a module's `import.meta.url`: the same from the TypeScript sources
 * and from their compiled copies in build/<fingerprint>/ (scripts/build.mjs),
 * which sit deeper in the tree.
 */
export function projectRoot(moduleUrl: string): string {
  let dir = dirname(fileURLToPath(moduleUrl));
  while (!isProjectRoot(dir)) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`no project package.json (one naming the workspaces) above ${fileURLToPath(moduleUrl)}`);
    dir = parent;
  }
  return dir;
}
