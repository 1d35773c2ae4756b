// The services and the taskmesh command run as JavaScript compiled ahead of
// time from their TypeScript (services/, packages/ with the generated contracts, deploy/), not through a
// TypeScript loader at every start: a service imports in half the time, and
// `taskmesh status` answers without compiling anything.
//
// ensureBuild() compiles each source file to its own .js (esbuild, no
// bundling: the tree and the imports stay as written) into
// build/<fingerprint>/, bundles the console (ui/console) for browsers
// into build/<fingerprint>/ui/console/ and each installable package
// (packages/client, packages/worker) into packages/<name>/dist/, where the fingerprint names the sources (their paths,
// sizes and modification times): a build is never changed once written, so
// processes running from it are never disturbed, and editing a source makes
// the next command build again (about 0.3 s). The last three builds are kept,
// and any build a running process took (`up`'s supervisor restarts services
// from it for as long as it runs) until that process ends.
//
// Plain JavaScript: scripts/taskmesh.mjs and bootstrap.mjs run it on
// whatever Node started them.
import { createHash } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
/** The folders compiled, relative to the project root. */
const SOURCES = ["services", "packages", "deploy"];
/** Copied as they are: packages/local/src/plan.ts imports this file to find the build its services run from. */
const COPIED = ["scripts/build.mjs"];
/** The console (ui/console): its page and style, copied, and its code, bundled for browsers into console.js. */
const CONSOLE = { dir: "ui/console", entry: "ui/console/src/main.ts", files: ["index.html", "console.css"] };
/**
 * The packages a user installs (`npm install <clone>/packages/client`): each
 * bundled with what it uses into build/<fingerprint>/packages/<name>/dist/,
 * and copied to packages/<name>/dist/index.js (git-ignored), which its
 * package.json exports, whenever the build changes.
 */
const PACKAGES = ["client", "worker"];
/** Lets a bundled CommonJS dependency (grpc-js) require Node's modules from an ES module. */
const REQUIRE_BANNER = 'import { createRequire as __taskmeshRequire } from "node:module";\nconst require = __taskmeshRequire(import.meta.url);';
/** Builds kept besides the newest. */
const KEEP = 3;

/** Every TypeScript source under `dir` that runs (no tests, no declarations). */
function sources(dir, into = []) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      if (entry.name !== "node_modules") sources(path, into);
    } else if (entry.name.endsWith(".ts") && !entry.name.endsWith(".d.ts") && !entry.name.endsWith(".test.ts")) {
      into.push(path);
    }
  }
  return into;
}

/**
 * The folder of a build of the current sources (`<root>/build/<fingerprint>`),
 * compiled now when there is none. Synchronous, so it can run where a
 * command line is put together.
 */
export function ensureBuild(root = ROOT) {
  const files = SOURCES.flatMap((dir) => (existsSync(join(root, dir)) ? sources(join(root, dir)) : [])).sort();
  const consoleDir = join(root, CONSOLE.dir);
  const consoleFiles = existsSync(consoleDir) ? [...sources(join(consoleDir, "src")), ...CONSOLE.files.map((f) => join(consoleDir, f))].sort() : [];
  const hash = createHash("sha256");
  const packages = workspaces(root);
  for (const file of [...files, ...consoleFiles, ...COPIED.map((f) => join(root, f)), ...[...packages.values()].map((p) => p.manifest)]) {
    const { size, mtimeMs } = statSync(file);
    hash.update(`${relative(root, file)}\0${size}\0${mtimeMs}\n`);
  }
  const builds = join(root, "build");
  const dir = join(builds, hash.digest("hex").slice(0, 16));
  if (existsSync(join(dir, ".complete"))) return publishPackages(root, used(dir));
  // Compiled into a folder of its own, then renamed into place: a command
  // running at the same time never sees half a build.
  const tmp = join(builds, `.tmp-${process.pid}-${Date.now()}`);
  mkdirSync(tmp, { recursive: true });
  try {
    esbuild(root).buildSync({
      entryPoints: files, outdir: tmp, outbase: root, format: "esm", platform: "node", target: "node24", logLevel: "warning",
    });
    linkWorkspaceImports(root, tmp, files, packages);
    for (const file of COPIED) {
      mkdirSync(dirname(join(tmp, file)), { recursive: true });
      copyFileSync(join(root, file), join(tmp, file));
    }
    if (consoleFiles.length > 0) {
      esbuild(root).buildSync({
        entryPoints: [join(root, CONSOLE.entry)], outfile: join(tmp, CONSOLE.dir, "console.js"), bundle: true, format: "esm", platform: "browser",
        target: "es2022", minify: true, logLevel: "warning",
      });
      for (const file of CONSOLE.files) copyFileSync(join(consoleDir, file), join(tmp, CONSOLE.dir, file));
    }
    for (const name of PACKAGES) {
      const entry = join(root, "packages", name, "src", "index.ts");
      if (!existsSync(entry)) continue;
      esbuild(root).buildSync({
        entryPoints: [entry], outfile: join(tmp, "packages", name, "dist", "index.js"), bundle: true, format: "esm", platform: "node",
        target: "node24", banner: { js: REQUIRE_BANNER }, logLevel: "warning",
      });
    }
    writeFileSync(join(tmp, ".complete"), "");
    try {
      renameSync(tmp, dir);
    } catch (error) {
      if (!existsSync(join(dir, ".complete"))) throw error; // another command built the same sources first
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  prune(builds, dir);
  return publishPackages(root, used(dir));
}

/** The workspaces (root package.json `workspaces`: `packages/*`, `services/*`) by package name: folder, manifest and exports. */
function workspaces(root) {
  const patterns = JSON.parse(readFileSync(join(root, "package.json"), "utf8")).workspaces ?? [];
  const found = new Map();
  for (const pattern of patterns) {
    const parent = join(root, pattern.replace(/\/\*$/, ""));
    if (!existsSync(parent)) continue;
    for (const entry of readdirSync(parent, { withFileTypes: true })) {
      const manifest = join(parent, entry.name, "package.json");
      if (!entry.isDirectory() || !existsSync(manifest)) continue;
      const { name, exports } = JSON.parse(readFileSync(manifest, "utf8"));
      found.set(name, { dir: join(parent, entry.name), manifest, exports: typeof exports === "string" ? { ".": exports } : (exports ?? {}) });
    }
  }
  return found;
}

/** The conditions a build resolves a workspace's exports with, in order: its sources first (compiled beside the importer). */
const CONDITIONS = ["taskmesh-source", "import", "default"];

/** The file a workspace package's `exports` give for `subpath` ("." or "./x"), relative to the package, or undefined. */
function exported(exports, subpath) {
  const pick = (target) => (typeof target === "string" ? target : target && CONDITIONS.map((c) => target[c]).find((t) => typeof t === "string"));
  if (subpath in exports) return pick(exports[subpath]);
  for (const [key, target] of Object.entries(exports)) {
    const star = key.indexOf("*");
    if (star < 0) continue;
    const [before, after] = [key.slice(0, star), key.slice(star + 1)];
    if (subpath.startsWith(before) && subpath.endsWith(after) && subpath.length >= key.length - 1) {
      return pick(target)?.replace("*", subpath.slice(before.length, subpath.length - after.length));
    }
  }
  return undefined;
}

/**
 * Points each `@taskmesh/<name>[/<sub>]` import of the compiled files at
 * the compiled module the package's `exports` name for it, as a relative
 * path: a build runs from its own files, never from a package's TypeScript
 * through node_modules. An import a package does not export fails the build.
 */
function linkWorkspaceImports(root, out, files, packages) {
  const specifier = /(\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)"(@taskmesh\/[^/"]+)(\/[^"]*)?"/g;
  for (const source of files) {
    const compiled = join(out, relative(root, source)).replace(/\.ts$/, ".js");
    const code = readFileSync(compiled, "utf8");
    if (!code.includes("@taskmesh/")) continue;
    const linked = code.replace(specifier, (whole, before, name, sub = "") => {
      const pkg = packages.get(name);
      if (!pkg) return whole;
      const target = exported(pkg.exports, `.${sub}`);
      if (!target) throw new Error(`${relative(root, source)}: ${name} exports no "${`.${sub}`}"`);
      let path = relative(dirname(compiled), join(out, relative(root, pkg.dir), target)).replace(/\.ts$/, ".js");
      if (!path.startsWith(".")) path = `./${path}`;
      return `${before}"${path}"`;
    });
    if (linked !== code) writeFileSync(compiled, linked);
  }
}

/** Copies each package's bundle of the build in `dir` to packages/<name>/dist/ when it is not that build's yet; answers `dir`. */
function publishPackages(root, dir) {
  const fingerprint = dir.slice(dir.lastIndexOf("/") + 1);
  for (const name of PACKAGES) {
    const bundle = join(dir, "packages", name, "dist", "index.js");
    const dist = join(root, "packages", name, "dist");
    if (!existsSync(bundle) || (existsSync(join(dist, ".build")) && readFileSync(join(dist, ".build"), "utf8") === fingerprint)) continue;
    mkdirSync(dist, { recursive: true });
    const tmp = join(dist, `.index.js.${process.pid}`);
    copyFileSync(bundle, tmp);
    renameSync(tmp, join(dist, "index.js"));
    writeFileSync(join(dist, ".build"), fingerprint);
  }
  return dir;
}

/**
 * Marks `dir` as used by this process, so no later build prunes it while the
 * process runs; the marks of processes that ended go (every command leaves
 * one, and most commands end at once).
 */
function used(dir) {
  const mark = `.used-by-${process.pid}`;
  for (const [name, pid] of marks(dir)) if (pid !== process.pid && !running(pid)) rmSync(join(dir, name), { force: true });
  if (!existsSync(join(dir, mark))) writeFileSync(join(dir, mark), "");
  return dir;
}

/** Whether a process that took the build in `dir` still runs. */
function inUse(dir) {
  return marks(dir).some(([, pid]) => running(pid));
}

/** The use marks in `dir`: file name and pid. */
function marks(dir) {
  return readdirSync(dir).flatMap((name) => {
    const pid = /^\.used-by-(\d+)$/.exec(name)?.[1];
    return pid ? [[name, Number(pid)]] : [];
  });
}

function running(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return error.code === "EPERM";
  }
}

/** Removes all but the newest {@link KEEP} builds (and what failed builds left). */
function prune(builds, current) {
  const entries = readdirSync(builds, { withFileTypes: true }).filter((e) => e.isDirectory() && join(builds, e.name) !== current);
  // A build's age is its `.complete` file's (a folder's own time moves when a process marks it used).
  const builtAt = (path) => statSync(existsSync(join(path, ".complete")) ? join(path, ".complete") : path).mtimeMs;
  const byAge = entries.map((e) => ({ path: join(builds, e.name), mtime: builtAt(join(builds, e.name)) })).sort((a, b) => b.mtime - a.mtime);
  const hour = 3_600_000;
  for (const [i, { path, mtime }] of byAge.entries()) {
    const unfinished = !existsSync(join(path, ".complete"));
    if ((unfinished && Date.now() - mtime > hour) || (!unfinished && i >= KEEP - 1 && !inUse(path))) rmSync(path, { recursive: true, force: true });
  }
}

let loaded;
/** The project's esbuild, loaded on first use (a fresh build is rare; most commands only check the fingerprint). */
function esbuild(root) {
  return (loaded ??= createRequire(join(root, "package.json"))("esbuild"));
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.stdout.write(`${ensureBuild()}\n`);
}
