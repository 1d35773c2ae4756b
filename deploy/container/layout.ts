/**
 * Where things are inside taskmesh's containers, the same under compose
 * (deploy/compose) and Kubernetes (deploy/k8s): every instance has a
 * network namespace of its own (shared by its app and its sidecar), so the
 * ports are fixed and equal for all, where `up` allocates free ones.
 */

/** The ports of one instance: the app and its sidecar (inside one network namespace), and the edge. */
export const PORTS = Object.freeze({
  /** The app's gRPC port, on 127.0.0.1 only (TASKMESH_LISTEN). */
  app: 7000,
  /** The sidecar's outbound h2c port on 127.0.0.1 (TASKMESH_UPSTREAM). */
  outbound: 7001,
  /** The sidecar's probe port: `grpc.health.v1.Health/Check` only, plain h2c, for kubelet gRPC probes. */
  probe: 7002,
  /** The sidecar's inbound mTLS port: the instance's one address in the mesh. */
  inbound: 7443,
  /** Every Envoy's admin port, on 127.0.0.1. */
  admin: 9901,
  /** The app's Prometheus `/metrics` (TASKMESH_METRICS_LISTEN), on every address. */
  metrics: 9464,
  /** The edge: gRPC, gRPC-Web and HTTP/JSON. */
  edge: 8080,
  /** Postgres, Redis, Kafka's broker listener, Jaeger's OTLP gRPC, OTLP HTTP and UI. */
  postgres: 5432,
  redis: 6379,
  kafka: 9092,
  otlpGrpc: 4317,
  otlpHttp: 4318,
  jaegerUi: 16686,
});

/** Where an Envoy finds its files: `envoy.yaml`, `certs/` and (the edge) `assets/`. */
export const MESH_DIR = "/etc/taskmesh";

/** An Envoy's config file. */
export const ENVOY_CONFIG = `${MESH_DIR}/envoy.yaml`;

/**
 * The arguments of an Envoy in a container: its config, its node name, and
 * its worker threads. Without `--concurrency` Envoy starts one worker per
 * core of the machine (not of its container's share), each with its own
 * upstream connections. A sidecar fronts one app, a single Node thread, and
 * one worker carries several times what that app answers (`npm run
 * bench:mesh`: a bare Envoy hop costs about 0.05 ms of CPU per call, the
 * app about 0.18); the edge takes every client's connections, each served
 * by one worker, so it has two, and more replicas beyond that.
 */
export function envoyArgs(kind: "sidecar" | "edge", node: string): string[] {
  return ["-c", ENVOY_CONFIG, "--service-node", node, "--concurrency", kind === "edge" ? "2" : "1", "--log-level", "warn"];
}

/**
 * The certificate folder of an Envoy: the SDS files and what they point at,
 * named as cert-manager names a Secret's keys (`tls.crt`, `tls.key`,
 * `ca.crt`), so a Kubernetes Secret mounted beside the SDS files is what
 * compose's init writes. Envoy watches the folder: a renewal (a new Secret
 * projected, or files renamed into place) reaches it without a restart.
 */
export const CERTS_DIR = `${MESH_DIR}/certs`;

/** The edge's static files: the descriptor set, the OpenAPI document, Swagger UI and the console. */
export const ASSETS_DIR = `${MESH_DIR}/assets`;

/** Where the image keeps the edge's static files (copied into {@link ASSETS_DIR} by an init step). */
export const IMAGE_ASSETS_DIR = "/app/edge-assets";

/** The image's user and group (non-root). */
export const IMAGE_UID = 10001;

/** The services the image runs (its first argument), in start order. */
export const IMAGE_SERVICES = ["config", "ledger", "coordinator", "worker", "identity", "ratelimit", "events"] as const;
