export { DOCS_BODY_LIMIT, DOCS_PATH, docsRoutes, localDocs, type EdgeDocsOptions } from "./docs.js";
export { edgeConfig, edgeRoutes, type EdgeOptions } from "./edge.js";
export type { Bootstrap } from "./envoy-types.js";
export { ACCESS_LOG_SLOW_MS, type AccessLogOptions } from "./observability.js";
export { HEALTH_PREFIX, LOCAL_APP_CLUSTER, PROBE_PATH, inboundRbac, meshCluster, meshEndpoints, outboundRoutes, sdsPathsOf, sidecarConfig, type MeshContext, type MeshInstance } from "./sidecar.js";
export { CA_SECRET, CERT_SECRET, certPaths, type SdsPaths } from "./tls.js";
export { DNS_REFRESH, endpointsPath, writeEndpoints, type Endpoint } from "./clusters.js";
export {
  EDGE, TOPOLOGY_PATH, TopologyError, calleesOf, healthServiceOf, identities, instanceNames, loadTopology, methodPolicy, parseTopology, spiffeId,
  type MethodPolicy, type Topology,
} from "./topology.js";
export { buildMesh, toYaml, writeMesh, writeSidecar, type MeshEnvoy, type MeshOptions, type WrittenEnvoy } from "./write.js";
