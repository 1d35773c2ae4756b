import { execa } from "execa";

/** Installs Debian's package as root: `apt-get update` first, then the package, without its recommends. */
export async function aptInstall(pkg: string, signal?: AbortSignal): Promise<void> {
  const opts = { all: true, reject: false, env: { DEBIAN_FRONTEND: "noninteractive" }, ...(signal ? { cancelSignal: signal } : {}) } as const;
  // Another apt run (a concurrent provisioning) holds the lock for a while: wait for it rather than fail.
  const lock = ["-o", "DPkg::Lock::Timeout=300"];
  const update = await execa("apt-get", [...lock, "update"], opts);
  if (update.failed) throw new Error(`apt-get update failed:\n${update.all?.split("\n").slice(-10).join("\n")}`, { cause: update });
  const install = await execa("apt-get", [...lock, "install", "-y", "--no-install-recommends", pkg], opts);
  if (install.failed) throw new Error(`apt-get install ${pkg} failed:\n${install.all?.split("\n").slice(-15).join("\n")}`, { cause: install });
}
