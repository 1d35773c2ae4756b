// The pinned Go tools of deploy/local/versions.json (grpcurl, the API docs'
// protoc-gen-openapiv2), built once with `go install` into
// ${XDG_CACHE_HOME:-~/.cache}/taskmesh/<tool>-<version>. Plain JavaScript
// with no dependencies: scripts/bootstrap.mjs runs it on the system's Node.
//   node scripts/go-tools.mjs <tool>   builds the tool when missing (its
//                                      output on stderr), prints its folder
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");

/** Every pinned component, by name. */
export function pinnedVersions() {
  return JSON.parse(readFileSync(join(root, "deploy", "local", "versions.json"), "utf8"));
}

/**
 * The folder holding the pinned Go tool `name`, built there first when
 * missing; `say` reports the build, `fail` ends with a message (it must not
 * return). `stdio` is the build's (default: this process's own).
 */
export function ensureGoTool(name, { say, fail, stdio = "inherit" }) {
  const { go: goPackage, version } = pinnedVersions()[name] ?? {};
  if (!goPackage) fail(`deploy/local/versions.json pins no Go tool ${name}`);
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
