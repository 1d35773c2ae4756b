/**
 * Writes the deployment files generated from deploy/topology.yaml and
 * deploy/versions.json: deploy/compose/compose.yaml and the generated
 * parts of deploy/k8s (`generated/` folders). Their tests fail while a
 * committed file differs from what this writes; run it after changing the
 * topology, a pinned image or the mesh generator, and commit the result.
 *
 *   npm run deploy:generate
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { composeYaml } from "./compose/compose-file.js";
import { k8sEnvoys, k8sBaseFiles } from "./k8s/manifests.js";
import { toYaml } from "@taskmesh/mesh";
import { ROOT } from "@taskmesh/local/provision/versions";
import { loadTopology, type Topology } from "@taskmesh/mesh/topology";

/** TASKMESH_TRACE_SAMPLING in the prod overlay, in percent. */
export const PROD_TRACE_PERCENT = 5;

/** Every generated deployment file: its path in the repository and its text. */
export function deploymentFiles(t: Topology = loadTopology()): Record<string, string> {
  const prodEdge = k8sEnvoys(t, { tracePercent: PROD_TRACE_PERCENT }).find((e) => e.name === "edge")!;
  return {
    "deploy/compose/compose.yaml": composeYaml(t),
    ...Object.fromEntries(Object.entries(k8sBaseFiles(t)).map(([path, text]) => [`deploy/k8s/base/${path}`, text])),
    // Production traces 5% of requests: the edge starts that share (the services' sampler is set beside it).
    "deploy/k8s/overlays/prod/generated/edge-envoy.yaml": toYaml(prodEdge.config),
  };
}

/** The generated files whose committed text differs from what {@link deploymentFiles} makes (missing ones included). */
export function staleDeploymentFiles(root = ROOT): string[] {
  return Object.entries(deploymentFiles()).filter(([path, text]) => {
    try {
      return readFileSync(join(root, path), "utf8") !== text;
    } catch {
      return true;
    }
  }).map(([path]) => path);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  for (const [path, text] of Object.entries(deploymentFiles())) {
    mkdirSync(dirname(join(ROOT, path)), { recursive: true });
    writeFileSync(join(ROOT, path), text);
    process.stdout.write(`${path}\n`);
  }
}
