/**
 * What a worker written in Python needs (`taskmesh worker ./worker.py`):
 * grpcio, grpcio-tools and grpcio-health-checking, pinned in
 * deploy/versions.json and installed once into a virtualenv under
 * `${XDG_CACHE_HOME:-~/.cache}/taskmesh/`, and the Python stubs of the
 * worker protocol generated from proto/ with that grpcio-tools (again
 * whenever the contracts change).
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pipInstall } from "./pip.js";
import { cacheDir, pinned, ROOT } from "./versions.js";

/** The contracts a worker speaks, relative to proto/, with what they import. */
const PROTOS = ["taskmesh/task/v1/task.proto", "taskmesh/worker/v1/worker.proto", "taskmesh/coordinator/v1/task_service.proto", "taskmesh/coordinator/v1/worker_service.proto"];

/**
 * Where the googleapis protos the contracts import (google/api, google/rpc)
 * are for protoc: npm's google-proto-files. Their Python modules come from
 * PyPI's googleapis-common-protos (pinned beside grpcio).
 */
const GOOGLEAPIS = join(ROOT, "node_modules", "google-proto-files");

/** The virtualenv's python and the folder of the generated stubs (put it on PYTHONPATH). */
export interface PythonWorkerRuntime {
  readonly python: string;
  readonly stubs: string;
}

const run = promisify(execFile);

/** Runs a command, failing with its last lines of output. */
async function runOrSay(command: string, args: readonly string[]): Promise<void> {
  try {
    await run(command, args, { maxBuffer: 16 * 1024 * 1024 });
  } catch (error) {
    const e = error as { stderr?: string; stdout?: string; message: string };
    throw new Error(`${command} ${args.slice(0, 3).join(" ")} failed: ${(e.stderr || e.stdout || e.message).trim().split("\n").slice(-8).join("\n")}`);
  }
}

/** Installs (once) the pinned grpcio packages and generates the stubs of the current contracts; answers where they are. */
export async function ensurePythonWorker(say: (line: string) => void = () => undefined): Promise<PythonWorkerRuntime> {
  const { pypi, version, with: extra = [] } = pinned("grpcio");
  if (!pypi) throw new Error("deploy/versions.json: grpcio needs a pypi package");
  // Named after every requirement, so a change of the pins makes a new virtualenv.
  const requirements = [`${pypi}==${version}`, ...extra];
  const home = cacheDir("python-worker", `${version}-${createHash("sha256").update(requirements.join("\n")).digest("hex").slice(0, 8)}`);
  const python = join(home, "venv", "bin", "python");
  // Made in place (a virtualenv records its own path) and marked complete last.
  if (!existsSync(join(home, ".complete"))) {
    rmSync(home, { recursive: true, force: true });
    say(`installing ${requirements.join(", ")} for Python workers (pip, once)…`);
    await pipInstall(join(home, "venv"), requirements, { what: "A Python worker's grpcio" });
    writeFileSync(join(home, ".complete"), "");
  }
  const hash = createHash("sha256");
  for (const proto of PROTOS) hash.update(`${proto}\0${readFileSync(join(ROOT, "proto", proto))}\0`);
  const stubs = join(home, "stubs", hash.digest("hex").slice(0, 16));
  if (!existsSync(join(stubs, ".complete"))) {
    const work = `${stubs}.partial-${process.pid}`;
    rmSync(work, { recursive: true, force: true });
    mkdirSync(work, { recursive: true });
    try {
      await runOrSay(python, ["-m", "grpc_tools.protoc", `-I${join(ROOT, "proto")}`, `-I${GOOGLEAPIS}`, `--python_out=${work}`, `--grpc_python_out=${work}`, ...PROTOS]);
      writeFileSync(join(work, ".complete"), "");
      rmSync(stubs, { recursive: true, force: true });
      renameSync(work, stubs);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  }
  return { python, stubs };
}
