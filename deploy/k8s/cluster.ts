/** Names the Kubernetes manifests share: the namespace, the stores' Services and Secrets, labels. */

/** The namespace everything runs in (the generated Envoy configs name it in their DNS names). */
export const NAMESPACE = "taskmesh";
/** The cluster's DNS domain. */
export const CLUSTER_DOMAIN = "cluster.local";

/** A Service's full DNS name in the namespace. */
export function serviceHost(name: string): string {
  return `${name}.${NAMESPACE}.svc.${CLUSTER_DOMAIN}`;
}

/** The headless Service whose DNS name resolves to every ready pod of `service` (its Envoys' STRICT_DNS clusters). */
export function meshServiceName(service: string): string {
  return `${service}-mesh`;
}

/** The stores, as their operators name them. */
export const STORES = Object.freeze({
  /** CloudNativePG Cluster `taskmesh-pg`: its app Secret holds the connection URI (key `uri`). */
  postgresCluster: "taskmesh-pg",
  postgresSecret: "taskmesh-pg-app",
  /** Strimzi Kafka `taskmesh-kafka`: its bootstrap Service. */
  kafkaCluster: "taskmesh-kafka",
  kafkaBootstrap: "taskmesh-kafka-kafka-bootstrap:9092",
  /** spotahome RedisFailover `taskmesh-redis`: `rfrm-<name>` always points at the current master. */
  redisFailover: "taskmesh-redis",
  redisUrl: "redis://rfrm-taskmesh-redis:6379",
  /** Jaeger (its own Deployment): OTLP and the UI. */
  jaeger: "jaeger",
});

/** The Secret identity's key-encryption key comes from (key `kek`: base64 of 32 random bytes), made by the operator of the cluster. */
export const IDENTITY_SECRET = "taskmesh-identity";

/** The cert-manager Issuer that signs every mesh identity (the mesh CA). */
export const MESH_ISSUER = "taskmesh-mesh-ca";

/** Labels of a mesh pod of `name` (a service or `edge`). */
export function meshLabels(name: string): Record<string, string> {
  return { "app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "taskmesh", "taskmesh.dev/mesh": "true" };
}
