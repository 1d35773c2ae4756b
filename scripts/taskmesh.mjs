#!/usr/bin/env node
// `npx taskmesh …`: runs packages/cli/src/cli.ts, compiled ahead of time
// (scripts/build.mjs: built again only when a source changed), on the
// project's pinned Node 24 (whatever Node started this), passing signals on.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { ensureBuild } from "./build.mjs";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const node = join(root, "node_modules", ".bin", "node");
if (!existsSync(node)) {
  process.stderr.write("taskmesh: packages are not installed yet: run npm start (or npm ci) first\n");
  process.exit(1);
}
// kafkajs (the Kafka readiness check) trips this warning on every Node 24 process (kafkajs#1751).
const flags = ["--disable-warning=TimeoutNegativeWarning"];
// The command runs in the project's folder; paths a user gives (`taskmesh worker ./my-agents.ts`) are theirs.
const child = spawn(node, [...flags, join(ensureBuild(root), "packages", "cli", "src", "cli.js"), ...process.argv.slice(2)], {
  stdio: "inherit", cwd: root, env: { ...process.env, TASKMESH_CALLER_CWD: process.cwd() },
});
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) process.on(signal, () => child.kill(signal));
child.on("exit", (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
