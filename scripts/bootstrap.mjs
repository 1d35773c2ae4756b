#!/usr/bin/env node
// The entry of `npm start` and `npm test` on any clone, fresh or not. It runs
// on whatever Node bootstraps npm (the system's may be old), so it is plain
// JavaScript with no dependencies: it installs the pinned packages when
// node_modules is missing or stale (which brings the pinned Node 24), builds
// the pinned tools into the cache, then runs the command on Node 24.
//
//   node scripts/bootstrap.mjs test [vitest args]   → vitest run
//   node scripts/bootstrap.mjs start [up options]   → taskmesh up (foreground)
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { ensureBuild } from "./build.mjs";
import { ensureGoTool, pinnedVersions } from "./go-tools.mjs";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const bin = join(root, "node_modules", ".bin");
const say = (line) => process.stdout.write(`taskmesh: ${line}\n`);
const fail = (line) => {
  process.stderr.write(`taskmesh: ${line}\n`);
  process.exit(1);
};

/** npm ci when node_modules is missing or was installed from another lockfile. */
function ensurePackages() {
  const lock = readFileSync(join(root, "package-lock.json"));
  const hash = createHash("sha256").update(lock).digest("hex");
  const stamp = join(root, "node_modules", ".taskmesh-lock");
  if (existsSync(join(bin, "node")) && existsSync(stamp) && readFileSync(stamp, "utf8") === hash) return;
  say("installing packages (npm ci)…");
  // npm runs on the system's Node, which may be older than what packages ask for (engines); they run on the pinned
  // Node 24 this install brings, so npm's EBADENGINE warnings (five lines per package) are noise: one line says it.
  const result = spawnSync("npm", ["ci", "--no-audit", "--no-fund"], { stdio: ["inherit", "inherit", "pipe"], cwd: root, encoding: "utf8", maxBuffer: 64 * 1024 * 1024 });
  if (result.error) fail(`npm: ${result.error.message}`);
  const lines = (result.stderr ?? "").split("\n");
  const engines = lines.filter((l) => l.startsWith("npm warn EBADENGINE"));
  const rest = lines.filter((l) => !l.startsWith("npm warn EBADENGINE")).join("\n").trim();
  if (rest) process.stderr.write(`${rest}\n`);
  if (engines.length > 0) say(`npm ran on Node ${process.versions.node}; the packages that want a newer one run on the pinned Node 24`);
  if (result.status !== 0) fail("npm ci failed");
  writeFileSync(stamp, hash);
}

/**
 * Builds each pinned Go tool marked `bootstrap` in deploy/versions.json
 * once into ${XDG_CACHE_HOME:-~/.cache}/taskmesh/<tool>-<version>; returns
 * their folders. (The runtime's own components are provisioned by `up`.)
 */
function ensureTools() {
  return Object.entries(pinnedVersions()).filter(([, { go, bootstrap }]) => bootstrap && go).map(([name]) => ensureGoTool(name, { say, fail }));
}

const [command, ...rest] = process.argv.slice(2);
ensurePackages();
const env = { ...process.env, PATH: [bin, ...ensureTools(), process.env.PATH].join(delimiter) };
const node = join(bin, "node");
// The test run also writes vitest's JSON report, to end with one plain summary line.
const report = join(tmpdir(), `taskmesh-vitest-${process.pid}.json`);
const commands = {
  test: [join(root, "node_modules", "vitest", "vitest.mjs"), "run", "--reporter=default", "--reporter=json", `--outputFile.json=${report}`],
  // kafkajs (the Kafka readiness check) trips this warning on every Node 24 process (kafkajs#1751).
  start: ["--disable-warning=TimeoutNegativeWarning", join(ensureBuild(root), "packages", "cli", "src", "cli.js"), "up"],
};
if (!commands[command]) fail("usage: bootstrap.mjs test|start [args]");
// `start` runs in a process group of its own, so Ctrl-C reaches only this
// process, which passes it on: the supervisor then stops the services and
// Postgres in order, instead of every process getting SIGINT at once.
const child = spawn(node, [...commands[command], ...rest], { stdio: "inherit", cwd: root, env, detached: command === "start" });
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) process.on(signal, () => child.kill(signal));
child.on("exit", (code, signal) => {
  if (command === "test") summarize();
  process.exit(code ?? (signal ? 1 : 0));
});

/** Prints `tests: N passed, N failed, N skipped` from the JSON report (nothing when there is none). */
function summarize() {
  try {
    const r = JSON.parse(readFileSync(report, "utf8"));
    process.stdout.write(`tests: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests + r.numTodoTests} skipped\n`);
  } catch {
    // no report: vitest did not get as far as running tests
  } finally {
    rmSync(report, { force: true });
  }
}
