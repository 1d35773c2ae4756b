/**
 * The mesh's Envoy configs for containers (compose and Kubernetes), made by
 * the same generator as `up`'s (packages/mesh) from deploy/topology.yaml: the
 * fixed ports and paths of ./layout.ts, peers reached by DNS name, the
 * collector by name, and the SDS files in each Envoy's certs folder.
 */
import { join } from "node:path";
import { sdsFile } from "@taskmesh/local/cert-files";
import { buildMesh, CA_SECRET, CERT_SECRET, type MeshEnvoy, type MeshInstance, type Topology } from "@taskmesh/mesh";
import { CERTS_DIR, MESH_DIR, PORTS } from "./layout.js";

/** One replica (compose) or one service's pods (Kubernetes) and where the mesh reaches it. */
export interface ContainerInstance {
  /** `coordinator-0` (compose), `coordinator` (Kubernetes: one config for all of a Deployment's pods). */
  readonly name: string;
  readonly service: string;
  /** The host name other Envoys resolve to reach its inbound port. */
  readonly address: string;
}

/** Options of {@link containerMesh}. */
export interface ContainerMeshOptions {
  readonly topology: Topology;
  readonly instances: readonly ContainerInstance[];
  /** The OTLP collector's host name (Jaeger). */
  readonly otlpAddress: string;
  /** Where a browser reaches the Jaeger UI, for the console's trace links. */
  readonly jaegerUrl: string;
  /** Give each sidecar the probe listener (Kubernetes' gRPC probes). @default false */
  readonly probes?: boolean;
  /** TASKMESH_TRACE_SAMPLING at the edge, in percent. @default 100 */
  readonly traceSamplingPercent?: number;
  /** Browser origins the edge's CORS allows. @default the edge's default (localhost) */
  readonly corsOrigins?: readonly string[];
  /**
   * The folder paths in the configs start with (each Envoy's `envoy.yaml`,
   * `certs/` and `assets/` are under it). @default MESH_DIR (/etc/taskmesh)
   */
  readonly meshDir?: string;
}

/** The private networks: in a container every peer Envoy is on one (compose's bridge, a cluster's pod network). */
export const PRIVATE_CIDRS = ["127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"] as const;

/** The SDS files of an Envoy whose certificate folder is `certsDir`: the mesh CA and its own identity, the same for every identity. */
export function sdsPaths(certsDir: string): { caSds: string; certSds: string } {
  return { caSds: join(certsDir, "sds-ca.yaml"), certSds: join(certsDir, "sds-cert.yaml") };
}

/**
 * The two SDS files of an Envoy's certificate folder `certsDir` (Secret
 * `mesh-ca` → `ca.crt`, Secret `mesh-cert` → `tls.crt` and `tls.key`),
 * written as `taskmesh certs` writes its own (packages/local/src/cert-files.ts).
 */
export function sdsFiles(certsDir = CERTS_DIR): Record<"sds-ca.yaml" | "sds-cert.yaml", string> {
  return {
    "sds-ca.yaml": sdsFile({ name: CA_SECRET, validation_context: { trusted_ca: { filename: join(certsDir, "ca.crt") } } }),
    "sds-cert.yaml": sdsFile({
      name: CERT_SECRET,
      tls_certificate: { certificate_chain: { filename: join(certsDir, "tls.crt") }, private_key: { filename: join(certsDir, "tls.key") } },
    }),
  };
}

/** Every sidecar's config and the edge's, for containers. */
export function containerMesh(options: ContainerMeshOptions): MeshEnvoy[] {
  const meshDir = options.meshDir ?? MESH_DIR;
  const certsDir = join(meshDir, "certs");
  const assets = join(meshDir, "assets"); // ASSETS_DIR under the default meshDir
  const instances: MeshInstance[] = options.instances.map((i) => ({
    name: i.name, service: i.service, address: i.address,
    appPort: PORTS.app, inboundPort: PORTS.inbound, outboundPort: PORTS.outbound, adminPort: PORTS.admin,
    ...(options.probes ? { probePort: PORTS.probe } : {}),
  }));
  return buildMesh({
    topology: options.topology,
    stateDir: meshDir,
    instances,
    otlpGrpcPort: PORTS.otlpGrpc,
    otlpAddress: options.otlpAddress,
    internalCidrs: PRIVATE_CIDRS,
    sdsPaths: () => sdsPaths(certsDir),
    edge: {
      port: PORTS.edge,
      address: "0.0.0.0",
      adminPort: PORTS.admin,
      descriptorSetPath: join(assets, "descriptor.binpb"),
      traceSamplingPercent: options.traceSamplingPercent ?? 100,
      ...(options.corsOrigins ? { corsOrigins: options.corsOrigins } : {}),
      docs: { openapiPath: join(assets, "openapi.json"), swaggerUiDir: join(assets, "swagger-ui") },
      console: { dir: join(assets, "console"), jaegerUrl: options.jaegerUrl },
    },
  });
}
