// The pinned Go tools of deploy/versions.json (grpcurl, the API docs'
// protoc-gen-openapiv2, kustomize), built once with `go install` into
// ${XDG_CACHE_HOME:-~/.cache}/taskmesh/<tool>-<version>, and this
// repository's own Go programs (`goModule`: deploy/check), built with `go
// build` into <tool>-<hash of their sources>. Plain JavaScript with no
// dependencies: scripts/bootstrap.mjs runs it on the system's Node.
//   node scripts/go-tools.mjs <tool>   builds the tool when missing (its
//                                      output on stderr), prints its folder
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");

/** Every pinned component, by name. */
export function pinnedVersions() {
  return JSON.parse(readFileSync(join(root, "deploy", "versions.json"), "utf8"));
}

/**
 * The folder holding the pinned Go tool `name`, built there first when
 * missing; `say` reports the build, `fail` ends with a message (it must not
 * return). `stdio` is the build's (default: this process's own).
 */
export function ensureGoTool(name, { say, fail, stdio = "inherit" }) {
  const { go: goPackage, version, goModule } = pinnedVersions()[name] ?? {};
  if (goModule) return ensureOwnTool(name, goModule, { say, fail, stdio });
  if (!goPackage) fail(`deploy/versions.json pins no Go tool ${name}`);
  const dir = join(process.env.XDG_CACHE_HOME || join(homedir(), ".cache"), "taskmesh", `${name}-${version}`);
  if (existsSync(join(dir, name))) return dir;
  if (spawnSync("go", ["version"], { stdio: "ignore" }).status !== 0) {
    fail(`${name} is built with Go, which is missing: install Go 1.22 or later (Debian: apt-get install golang)`);
  }
  say(`building ${name} ${version} (go install, once)…`);
  mkdirSync(dir, { recursive: true });
  const result = spawnSync("go", ["install", `${goPackage}@${version}`], { stdio, cwd: root, env: { ...process.env, GOBIN: dir } });
  if (result.error) fail(`go: ${result.error.message}`);
  if (result.status !== 0) fail(`go install ${goPackage}@${version} failed`);
  return dir;
}

/**
 * A Go program of this repository (`goModule`, a folder with its go.mod and
 * go.sum), built with `go build` into <name>-<hash of its go.mod, go.sum and
 * .go files>: a changed source builds a new one; returns the folder.
 */
function ensureOwnTool(name, moduleDir, { say, fail, stdio }) {
  const src = join(root, moduleDir);
  const hash = createHash("sha256");
  for (const file of readdirSync(src).filter((f) => f.endsWith(".go") || f === "go.mod" || f === "go.sum").sort()) {
    hash.update(`${file}\0`).update(readFileSync(join(src, file))).update("\0");
  }
  const dir = join(process.env.XDG_CACHE_HOME || join(homedir(), ".cache"), "taskmesh", `${name}-${hash.digest("hex").slice(0, 12)}`);
  if (existsSync(join(dir, name))) return dir;
  if (spawnSync("go", ["version"], { stdio: "ignore" }).status !== 0) {
    fail(`${name} is built with Go, which is missing: install Go 1.26 or later`);
  }
  say(`building ${name} (go build of ${moduleDir}, once per change of its sources)…`);
  mkdirSync(dir, { recursive: true });
  const partial = join(dir, `${name}.partial-${process.pid}`);
  try {
    const result = spawnSync("go", ["build", "-trimpath", "-o", partial, "."], { stdio, cwd: src, env: { ...process.env, GOFLAGS: "-mod=readonly" } });
    if (result.error) fail(`go: ${result.error.message}`);
    if (result.status !== 0) fail(`go build of ${moduleDir} failed`);
    renameSync(partial, join(dir, name));
  } finally {
    rmSync(partial, { force: true });
  }
  return dir;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const [name] = process.argv.slice(2);
  const toStderr = (line) => process.stderr.write(`taskmesh: ${line}\n`);
  if (!name) {
    toStderr("usage: node scripts/go-tools.mjs <tool>");
    process.exit(2);
  }
  const dir = ensureGoTool(name, { say: toStderr, fail: (line) => (toStderr(line), process.exit(1)), stdio: ["inherit", 2, 2] });
  process.stdout.write(`${dir}\n`);
}
