/**
 * The files the edge Envoy serves itself (the descriptor set its JSON
 * transcoder reads, the API docs and the console), gathered into one folder
 * laid out as ./mesh.ts's edge config reads it under ASSETS_DIR. The image
 * gathers them at build time into IMAGE_ASSETS_DIR; compose's init and a
 * Kubernetes init container copy that folder to the edge.
 *
 *   node deploy/container/edge-assets.js <build folder> <destination>
 */
import { cpSync, mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { projectRoot } from "@taskmesh/kit/project-root";

/** Swagger UI's files the docs routes serve (packages/mesh/src/docs.ts). */
const SWAGGER_UI_FILES = ["swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png"];
/** The built console's files (packages/mesh/src/console.ts). */
const CONSOLE_FILES = ["index.html", "console.js", "console.css"];

/** Copies the edge's files from the checkout at `root` and its build `build` (build/<fingerprint>) into `dest`. */
export function gatherEdgeAssets(root: string, build: string, dest: string): void {
  mkdirSync(join(dest, "swagger-ui"), { recursive: true });
  mkdirSync(join(dest, "console"), { recursive: true });
  cpSync(join(root, "packages/contracts/gen/descriptor.binpb"), join(dest, "descriptor.binpb"));
  cpSync(join(root, "packages/contracts/gen/openapi/taskmesh.swagger.json"), join(dest, "openapi.json"));
  const swaggerUi = dirname(createRequire(join(root, "package.json")).resolve("swagger-ui-dist/package.json"));
  for (const file of SWAGGER_UI_FILES) cpSync(join(swaggerUi, file), join(dest, "swagger-ui", file));
  for (const file of CONSOLE_FILES) cpSync(join(build, "ui/console", file), join(dest, "console", file));
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const [build, dest] = process.argv.slice(2);
  if (!build || !dest) {
    process.stderr.write("usage: edge-assets.js <build folder> <destination>\n");
    process.exit(2);
  }
  gatherEdgeAssets(projectRoot(import.meta.url), resolve(build), resolve(dest));
}
