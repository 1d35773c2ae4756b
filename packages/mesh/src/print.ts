// Prints the generated config of one Envoy of the mesh, for reading:
//   node --import tsx packages/mesh/src/print.ts [coordinator-0|edge|...] [--replicas coordinator=2,worker=3] [--state-dir .taskmesh]
// Ports are an example plan (from 20000 up, four per instance); `taskmesh up`
// allocates real ones and writes every config with writeMesh().
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { projectRoot } from "@taskmesh/kit/project-root";
import { localDocs } from "./docs.js";
import { instanceNames, loadTopology } from "./topology.js";
import { buildMesh, toYaml } from "./write.js";

/** The project's root folder. */
const ROOT = projectRoot(import.meta.url);

const { values, positionals } = parseArgs({ allowPositionals: true, options: { replicas: { type: "string" }, "state-dir": { type: "string" } } });
const replicas = Object.fromEntries((values.replicas ?? "").split(",").filter(Boolean).map((pair) => {
  const [name, count] = pair.split("=");
  return [name!, Number(count)];
}));
const topology = loadTopology();
let port = 20_000;
const instances = instanceNames(topology, replicas).map(({ name, service }) => ({ name, service, appPort: port++, inboundPort: port++, outboundPort: port++, adminPort: port++ }));
const envoys = buildMesh({
  topology,
  stateDir: resolve(values["state-dir"] ?? process.env.TASKMESH_STATE_DIR ?? join(ROOT, ".taskmesh")),
  instances,
  otlpGrpcPort: Number(process.env.TASKMESH_OTLP_GRPC_PORT ?? 4317),
  edge: { port: 8080, adminPort: 9901, descriptorSetPath: join(ROOT, "packages/contracts/gen/descriptor.binpb"), docs: localDocs(ROOT) },
});
const wanted = positionals[0] ?? "coordinator-0";
const envoy = envoys.find((e) => e.name === wanted);
if (!envoy) {
  process.stderr.write(`no Envoy ${wanted}; there are: ${envoys.map((e) => e.name).join(", ")}\n`);
  process.exit(2);
}
process.stdout.write(toYaml(envoy.config));
