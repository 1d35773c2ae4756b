import { existsSync, readdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, relative, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { ROOT } from "@taskmesh/local/provision/versions";

interface Workspace {
  readonly name: string;
  readonly dir: string;
  readonly exports: Record<string, unknown>;
  readonly uses: ReadonlySet<string>;
}

/** The workspaces the root package.json names (packages/*, services/*). */
function workspaces(): Workspace[] {
  const patterns = (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { workspaces: string[] }).workspaces;
  return patterns.flatMap((pattern) => {
    const parent = join(ROOT, pattern.replace(/\/\*$/, ""));
    return readdirSync(parent).filter((name) => existsSync(join(parent, name, "package.json"))).map((name) => {
      const manifest = JSON.parse(readFileSync(join(parent, name, "package.json"), "utf8")) as {
        name: string; exports?: Record<string, unknown>; dependencies?: Record<string, string>; devDependencies?: Record<string, string>;
      };
      return {
        name: manifest.name, dir: join(parent, name), exports: manifest.exports ?? {},
        uses: new Set(Object.keys({ ...manifest.dependencies, ...manifest.devDependencies })),
      };
    });
  });
}

/** Every TypeScript source of a workspace (not its bundle), with the module specifiers it imports. */
function sources(dir: string): { file: string; specifiers: string[] }[] {
  const found: { file: string; specifiers: string[] }[] = [];
  const walk = (at: string) => {
    for (const entry of readdirSync(at, { withFileTypes: true })) {
      if (entry.isDirectory() && !["node_modules", "dist"].includes(entry.name)) walk(join(at, entry.name));
      else if (entry.name.endsWith(".ts")) {
        const code = readFileSync(join(at, entry.name), "utf8");
        const specifiers = [...code.matchAll(/(?:\bfrom\s+|\bimport\s*\(\s*|^import\s+)["']([^"']+)["']/gm)].map((m) => m[1]!);
        found.push({ file: join(at, entry.name), specifiers });
      }
    }
  };
  walk(dir);
  return found;
}

/** Whether `exports` offers `subpath` ("." or "./x"), exactly or through one `*` pattern. */
function offers(exports: Record<string, unknown>, subpath: string): boolean {
  return Object.keys(exports).some((key) => {
    const star = key.indexOf("*");
    return star < 0 ? key === subpath : subpath.startsWith(key.slice(0, star)) && subpath.endsWith(key.slice(star + 1));
  });
}

describe("packages with walls (npm workspaces)", () => {
  const all = workspaces();
  const byName = new Map(all.map((w) => [w.name, w]));

  it("the workspaces are the packages and the services", () => {
    expect([...byName.keys()].sort()).toEqual([
      "@taskmesh/cli", "@taskmesh/client", "@taskmesh/config-service", "@taskmesh/contracts", "@taskmesh/coordinator-service",
      "@taskmesh/events-service", "@taskmesh/identity-service", "@taskmesh/kit", "@taskmesh/ledger-service", "@taskmesh/local",
      "@taskmesh/mesh", "@taskmesh/ratelimit-service", "@taskmesh/worker", "@taskmesh/worker-service",
    ]);
  });

  it("no source reaches out of its workspace's folder by a relative path; another workspace is imported by its name, as it exports it and as the importer declares it", () => {
    const breaches: string[] = [];
    for (const workspace of all) {
      for (const { file, specifiers } of sources(workspace.dir)) {
        const at = relative(ROOT, file);
        for (const specifier of specifiers) {
          if (specifier.startsWith(".")) {
            const target = resolve(dirname(file), specifier);
            // The one way out: the local runtime finds the build its services run from (scripts/build.mjs, plain JavaScript).
            const allowed = relative(ROOT, target) === "scripts/build.mjs" && workspace.name === "@taskmesh/local";
            if (!target.startsWith(workspace.dir + "/") && !allowed) breaches.push(`${at}: ${specifier} leaves ${relative(ROOT, workspace.dir)}`);
            continue;
          }
          const match = /^(@taskmesh\/[^/]+)(\/.*)?$/.exec(specifier);
          if (!match || match[1] === workspace.name) continue;
          const [, name, sub = ""] = match;
          const target = byName.get(name!);
          if (!target) breaches.push(`${at}: ${name} is no workspace`);
          else if (!offers(target.exports, `.${sub}`)) breaches.push(`${at}: ${name} exports no ".${sub}"`);
          if (!workspace.uses.has(name!)) breaches.push(`${at}: ${name} is not among ${workspace.name}'s dependencies`);
        }
      }
    }
    expect(breaches).toEqual([]);
  });

  it("the dependencies between workspaces have no cycle, and the contracts depend on no other", () => {
    const order: string[] = [];
    const state = new Map<string, "visiting" | "done">();
    const visit = (name: string, path: string[]): void => {
      if (state.get(name) === "done") return;
      expect(state.get(name), `cycle: ${[...path, name].join(" → ")}`).not.toBe("visiting");
      state.set(name, "visiting");
      for (const used of byName.get(name)!.uses) if (byName.has(used)) visit(used, [...path, name]);
      state.set(name, "done");
      order.push(name);
    };
    for (const name of byName.keys()) visit(name, []);
    expect([...byName.get("@taskmesh/contracts")!.uses].filter((n) => byName.has(n))).toEqual([]);
    expect(order).toHaveLength(byName.size);
  });

  it("Node's resolution holds the wall: a module a package exports resolves, one it does not export fails though its file exists", () => {
    const require = createRequire(join(ROOT, "package.json"));
    expect(require.resolve("@taskmesh/kit/errors")).toBe(join(ROOT, "packages/kit/src/errors.ts"));
    expect(existsSync(join(ROOT, "packages/kit/src/ids.ts"))).toBe(true);
    expect(() => require.resolve("@taskmesh/kit/ids")).toThrow(expect.objectContaining({ code: "ERR_PACKAGE_PATH_NOT_EXPORTED" }));
    expect(() => require.resolve("@taskmesh/ledger-service/src/build.ts")).toThrow(expect.objectContaining({ code: "ERR_PACKAGE_PATH_NOT_EXPORTED" }));
  });
});
