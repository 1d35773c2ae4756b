import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * The project's root folder (the nearest one above `moduleUrl` holding a
 * `package.json`), from a module's `import.meta.url`: the same from the
 * TypeScript sources and from their compiled copies in build/<fingerprint>/
 * (scripts/build.mjs), which sit deeper in the tree.
 */
export function projectRoot(moduleUrl: string): string {
  let dir = dirname(fileURLToPath(moduleUrl));
  while (!existsSync(join(dir, "package.json"))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`no package.json above ${fileURLToPath(moduleUrl)}`);
    dir = parent;
  }
  return dir;
}
