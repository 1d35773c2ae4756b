/**
 * The generated part of deploy/k8s/base, from deploy/topology.yaml: per
 * service its ServiceAccount, mesh Certificate (cert-manager), headless
 * Service, Deployment (the app and its Envoy sidecar as a native sidecar
 * container, gRPC probes through the sidecar's probe port), PodDisruption
 * Budget and NetworkPolicy (ingress from the callers topology.yaml names);
 * the same for the edge; every Envoy's config (deploy/container/mesh.ts, the
 * generator `up` uses, with cluster DNS names) and the shared SDS files.
 */
import { stringify } from "yaml";
import { jaegerConfig } from "@taskmesh/local/provision/jaeger";
import { pinned } from "@taskmesh/local/provision/versions";
import { toYaml, type Bootstrap } from "@taskmesh/mesh";
import { EDGE, healthServiceOf, spiffeId, type Topology } from "@taskmesh/mesh/topology";
import { ASSETS_DIR, CERTS_DIR, ENVOY_CONFIG, IMAGE_UID, PORTS, envoyArgs } from "../container/layout.js";
import { containerMesh, sdsFiles } from "../container/mesh.js";
import { SECRETS_DIR, STORES as USES, serviceEnv } from "../container/service-env.js";
import { IDENTITY_SECRET, MESH_ISSUER, NAMESPACE, STORES, meshLabels, meshServiceName, serviceHost } from "./cluster.js";

/** The taskmesh image the manifests name (an overlay's `images:` sets the registry and tag). */
export const TASKMESH_IMAGE = "taskmesh";

/** Options of the generated manifests. */
export interface K8sMeshOptions {
  /** TASKMESH_TRACE_SAMPLING: the edge's share of traced requests, in percent. @default 100 */
  readonly tracePercent?: number;
}

type Doc = Record<string, unknown>;

/** Every Envoy's config, for cluster DNS names: one per service (all its pods share it) and the edge's. */
export function k8sEnvoys(t: Topology, options: K8sMeshOptions = {}): { name: string; config: Bootstrap }[] {
  return containerMesh({
    topology: t,
    instances: Object.keys(t.services).map((service) => ({ name: service, service, address: serviceHost(meshServiceName(service)) })),
    otlpAddress: serviceHost(STORES.jaeger),
    jaegerUrl: `http://127.0.0.1:${PORTS.jaegerUi}`,
    probes: true,
    traceSamplingPercent: options.tracePercent ?? 100,
  }).map((e) => ({ name: e.name, config: e.config }));
}

const dropAll = { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ["ALL"] } };

/** The Envoy sidecar: a native sidecar (an init container that keeps running), so it starts before the app and stops after it. */
function envoyContainer(name: string, ports: Doc[], probePort: string | number): Doc {
  return {
    name: "envoy",
    image: pinned("envoy").image,
    restartPolicy: "Always",
    args: envoyArgs(name === EDGE ? "edge" : "sidecar", "$(POD_NAME)"),
    env: [{ name: "POD_NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } }],
    ports,
    // The app starts once its sidecar listens.
    startupProbe: { tcpSocket: { port: probePort }, periodSeconds: 1, failureThreshold: 30 },
    resources: { requests: { cpu: "50m", memory: "64Mi" }, limits: { memory: "256Mi" } },
    securityContext: dropAll,
    volumeMounts: [
      { name: "envoy-config", mountPath: ENVOY_CONFIG, subPath: "envoy.yaml", readOnly: true },
      { name: "mesh-certs", mountPath: CERTS_DIR, readOnly: true },
      ...(name === EDGE ? [{ name: "edge-assets", mountPath: ASSETS_DIR, readOnly: true }] : []),
    ],
  };
}

/** Envoy's config and its certificate folder: the shared SDS files beside the identity's Secret (cert-manager's tls.crt, tls.key, ca.crt). */
function meshVolumes(name: string): Doc[] {
  return [
    { name: "envoy-config", configMap: { name: `${name}-envoy` } },
    {
      name: "mesh-certs",
      projected: {
        defaultMode: 0o400,
        sources: [
          { configMap: { name: "taskmesh-sds" } },
          { secret: { name: `${name}-mesh-cert`, items: [{ key: "tls.crt", path: "tls.crt" }, { key: "tls.key", path: "tls.key" }, { key: "ca.crt", path: "ca.crt" }] } },
        ],
      },
    },
  ];
}

const podSecurity = { runAsNonRoot: true, runAsUser: IMAGE_UID, runAsGroup: IMAGE_UID, fsGroup: IMAGE_UID, seccompProfile: { type: "RuntimeDefault" } };

function metadata(name: string, labels: Record<string, string>): Doc {
  return { name, labels };
}

/** An identity's certificate: its SPIFFE ID as the URI SAN, issued by the mesh CA, renewed by cert-manager before it ends. */
function certificate(t: Topology, name: string): Doc {
  return {
    apiVersion: "cert-manager.io/v1",
    kind: "Certificate",
    metadata: metadata(`${name}-mesh`, meshLabels(name)),
    spec: {
      secretName: `${name}-mesh-cert`,
      commonName: name,
      uris: [spiffeId(t, name)],
      duration: "24h",
      renewBefore: "8h",
      privateKey: { algorithm: "ECDSA", size: 256, rotationPolicy: "Always" },
      usages: ["server auth", "client auth", "digital signature"],
      issuerRef: { name: MESH_ISSUER, kind: "Issuer", group: "cert-manager.io" },
    },
  };
}

function serviceAccount(name: string): Doc {
  return { apiVersion: "v1", kind: "ServiceAccount", metadata: metadata(name, meshLabels(name)), automountServiceAccountToken: false };
}

function pdb(name: string): Doc {
  return {
    apiVersion: "policy/v1",
    kind: "PodDisruptionBudget",
    metadata: metadata(name, meshLabels(name)),
    // One pod at a time: a drain never takes every replica, and a single replica can still be moved.
    spec: { maxUnavailable: 1, selector: { matchLabels: { "app.kubernetes.io/name": name } } },
  };
}

/** Ingress of a mesh pod: its inbound mTLS port from the callers topology.yaml names, gRPC probes, and metrics from the monitoring namespace. */
function networkPolicy(name: string, callers: readonly string[], extraIngress: Doc[] = []): Doc {
  return {
    apiVersion: "networking.k8s.io/v1",
    kind: "NetworkPolicy",
    metadata: metadata(name, meshLabels(name)),
    spec: {
      podSelector: { matchLabels: { "app.kubernetes.io/name": name } },
      policyTypes: ["Ingress"],
      ingress: [
        ...(callers.length > 0 ? [{
          from: [{ podSelector: { matchExpressions: [{ key: "app.kubernetes.io/name", operator: "In", values: [...callers] }] } }],
          ports: [{ port: PORTS.inbound, protocol: "TCP" }],
        }] : []),
        ...extraIngress,
        // Health only, answered by the sidecar from the app: the kubelet's gRPC probes.
        { ports: [{ port: PORTS.probe, protocol: "TCP" }] },
        { from: [{ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "monitoring" } } }], ports: [{ port: PORTS.metrics, protocol: "TCP" }] },
      ],
    },
  };
}

/** The app's environment: serviceEnv's variables, its instance name, and its secrets from Kubernetes Secrets. */
function appEnv(t: Topology, service: string, tracePercent: number): Doc[] {
  const vars = serviceEnv(t, service, {
    postgresUrl: "", redisUrl: STORES.redisUrl, kafkaBrokers: STORES.kafkaBootstrap,
    otlpEndpoint: `http://${STORES.jaeger}:${PORTS.otlpGrpc}`, tracePercent,
  });
  const env: Doc[] = [{ name: "TASKMESH_INSTANCE", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } }];
  if (service === "worker") env.push({ name: "TASKMESH_WORKER_ID", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } });
  for (const [name, value] of Object.entries(vars)) {
    // CloudNativePG's app Secret holds the whole URI (user, password, the read-write Service).
    if (name === "DATABASE_URL") env.push({ name, valueFrom: { secretKeyRef: { name: STORES.postgresSecret, key: "uri" } } });
    else env.push({ name, value });
  }
  if (service === "identity") {
    env.push(
      { name: "TASKMESH_IDENTITY_KEK", valueFrom: { secretKeyRef: { name: IDENTITY_SECRET, key: "kek" } } },
      { name: "TASKMESH_BOOTSTRAP_KEY_FILE", value: `${SECRETS_DIR}/bootstrap-api-key` },
    );
  }
  return env;
}

const RESOURCES: Readonly<Record<string, Doc>> = {
  coordinator: { requests: { cpu: "500m", memory: "256Mi" }, limits: { memory: "1Gi" } },
  ledger: { requests: { cpu: "200m", memory: "192Mi" }, limits: { memory: "768Mi" } },
  worker: { requests: { cpu: "250m", memory: "192Mi" }, limits: { memory: "1Gi" } },
};
const DEFAULT_RESOURCES: Doc = { requests: { cpu: "100m", memory: "128Mi" }, limits: { memory: "512Mi" } };

function deployment(t: Topology, service: string, tracePercent: number): Doc {
  const labels = meshLabels(service);
  const health = healthServiceOf(t, service);
  const grpcProbe = { grpc: { port: PORTS.probe, service: health } };
  return {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: metadata(service, labels),
    spec: {
      replicas: t.services[service]!.replicas,
      selector: { matchLabels: { "app.kubernetes.io/name": service } },
      strategy: { type: "RollingUpdate", rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } },
      template: {
        metadata: { labels },
        spec: {
          serviceAccountName: service,
          automountServiceAccountToken: false,
          securityContext: podSecurity,
          // The app's drain (TASKMESH_SHUTDOWN_GRACE, 10 s by default) and the sidecar's exit after it.
          terminationGracePeriodSeconds: 30,
          topologySpreadConstraints: [{ maxSkew: 1, topologyKey: "kubernetes.io/hostname", whenUnsatisfiable: "ScheduleAnyway", labelSelector: { matchLabels: { "app.kubernetes.io/name": service } } }],
          initContainers: [envoyContainer(service, [
            { name: "mesh", containerPort: PORTS.inbound, protocol: "TCP" },
            { name: "probe", containerPort: PORTS.probe, protocol: "TCP" },
          ], "probe")],
          containers: [{
            name: "app",
            image: TASKMESH_IMAGE,
            args: [service],
            env: appEnv(t, service, tracePercent),
            ports: [{ name: "metrics", containerPort: PORTS.metrics, protocol: "TCP" }],
            // gRPC health through the sidecar's probe port (the app listens on loopback): NOT_SERVING until its
            // dependencies are ready and from the start of a shutdown. No liveness probe: a fatal error ends the
            // process, and a dependency's outage must not restart every pod.
            startupProbe: { ...grpcProbe, periodSeconds: 2, failureThreshold: 90 },
            readinessProbe: { ...grpcProbe, periodSeconds: 5, failureThreshold: 2 },
            resources: RESOURCES[service] ?? DEFAULT_RESOURCES,
            securityContext: dropAll,
            ...(service === "identity" ? { volumeMounts: [{ name: "identity-files", mountPath: SECRETS_DIR }] } : {}),
          }],
          volumes: [...meshVolumes(service), ...(service === "identity" ? [{ name: "identity-files", emptyDir: { medium: "Memory", sizeLimit: "1Mi" } }] : [])],
        },
      },
    },
  };
}

function headlessService(service: string): Doc {
  return {
    apiVersion: "v1",
    kind: "Service",
    metadata: metadata(meshServiceName(service), meshLabels(service)),
    // Headless: its name resolves to every ready pod, each a host of its callers' Envoy clusters (health-checked there too).
    spec: { clusterIP: "None", selector: { "app.kubernetes.io/name": service }, ports: [{ name: "mesh", port: PORTS.inbound, targetPort: "mesh", protocol: "TCP" }] },
  };
}

function edgeDeployment(): Doc {
  const labels = meshLabels(EDGE);
  return {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: metadata(EDGE, labels),
    spec: {
      replicas: 1,
      selector: { matchLabels: { "app.kubernetes.io/name": EDGE } },
      strategy: { type: "RollingUpdate", rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } },
      template: {
        metadata: { labels },
        spec: {
          serviceAccountName: EDGE,
          automountServiceAccountToken: false,
          securityContext: podSecurity,
          terminationGracePeriodSeconds: 30,
          topologySpreadConstraints: [{ maxSkew: 1, topologyKey: "kubernetes.io/hostname", whenUnsatisfiable: "ScheduleAnyway", labelSelector: { matchLabels: { "app.kubernetes.io/name": EDGE } } }],
          initContainers: [{
            name: "edge-assets",
            image: TASKMESH_IMAGE,
            args: ["edge-assets", ASSETS_DIR],
            resources: { requests: { cpu: "10m", memory: "32Mi" }, limits: { memory: "64Mi" } },
            securityContext: dropAll,
            volumeMounts: [{ name: "edge-assets", mountPath: ASSETS_DIR }],
          }],
          containers: [{
            ...envoyContainer(EDGE, [{ name: "http", containerPort: PORTS.edge, protocol: "TCP" }], "http"),
            restartPolicy: undefined,
            startupProbe: undefined,
            // Ready once it routes: health of the coordinator, through the edge itself (open without a token).
            readinessProbe: { grpc: { port: PORTS.edge, service: "" }, periodSeconds: 5, failureThreshold: 2 },
            resources: { requests: { cpu: "250m", memory: "128Mi" }, limits: { memory: "512Mi" } },
          }],
          volumes: [...meshVolumes(EDGE), { name: "edge-assets", emptyDir: { sizeLimit: "64Mi" } }],
        },
      },
    },
  };
}

function edgeService(): Doc {
  return {
    apiVersion: "v1",
    kind: "Service",
    metadata: metadata(EDGE, meshLabels(EDGE)),
    spec: { selector: { "app.kubernetes.io/name": EDGE }, ports: [{ name: "http", port: PORTS.edge, targetPort: "http", protocol: "TCP" }] },
  };
}

/** Drops keys whose value is undefined (a spread that removes a field). */
function clean<T>(value: T): T {
  return JSON.parse(JSON.stringify(value)) as T;
}

/** The generated files of deploy/k8s/base, by their path under it. */
export function k8sBaseFiles(t: Topology, options: K8sMeshOptions = {}): Record<string, string> {
  const tracePercent = options.tracePercent ?? 100;
  const files: Record<string, string> = {};
  const header = "# Generated from deploy/topology.yaml by deploy/k8s/manifests.ts (npm run deploy:generate); do not edit.\n";
  const docs = (list: Doc[]) => header + list.map((d) => stringify(clean(d), { lineWidth: 0, aliasDuplicateObjects: false })).join("---\n");
  for (const [service, spec] of Object.entries(t.services)) {
    files[`generated/${service}.yaml`] = docs([
      serviceAccount(service),
      certificate(t, service),
      ...(spec.callers.length > 0 ? [headlessService(service)] : []),
      deployment(t, service, tracePercent),
      pdb(service),
      networkPolicy(service, spec.callers),
    ]);
  }
  files["generated/edge.yaml"] = docs([
    serviceAccount(EDGE), certificate(t, EDGE), edgeService(), edgeDeployment(), pdb(EDGE),
    networkPolicy(EDGE, [], [{ ports: [{ port: PORTS.edge, protocol: "TCP" }] }]),
  ]);
  files["generated/network-policies.yaml"] = docs([defaultDeny(), ...storePolicies(t)]);
  for (const envoy of k8sEnvoys(t, options)) files[`generated/envoy/${envoy.name}.yaml`] = toYaml(envoy.config);
  for (const [file, text] of Object.entries(sdsFiles())) files[`generated/envoy/${file}`] = text;
  files["generated/jaeger.yaml"] = jaegerConfig({ stateDir: "/etc/taskmesh", listenAddress: "0.0.0.0" });
  files["generated/kustomization.yaml"] = header + stringify({
    apiVersion: "kustomize.config.k8s.io/v1beta1",
    kind: "Kustomization",
    resources: [...Object.keys(t.services).map((s) => `${s}.yaml`), "edge.yaml", "network-policies.yaml"],
    // A changed config makes a new name, so the pods using it roll.
    configMapGenerator: [
      { name: "taskmesh-sds", files: Object.keys(sdsFiles()).map((f) => `envoy/${f}`) },
      ...[...Object.keys(t.services), EDGE].map((name) => ({ name: `${name}-envoy`, files: [`envoy.yaml=envoy/${name}.yaml`] })),
      { name: "jaeger-config", files: ["jaeger.yaml"] },
    ],
  }, { lineWidth: 0 });
  return files;
}

/** The services whose pods reach each store. */
export function storeClients(t: Topology): Record<"postgres" | "redis" | "kafka", string[]> {
  const of = (store: "postgres" | "redis" | "kafka") => Object.keys(t.services).filter((s) => USES[s]?.includes(store));
  return { postgres: of("postgres"), redis: of("redis"), kafka: of("kafka") };
}

/**
 * Ingress of the stores: Postgres and Redis from the services that use them
 * (deploy/container/service-env.ts), from their own pods (replication,
 * Sentinel) and from their operators' namespaces. Kafka's policies are
 * Strimzi's own, from its listener's `networkPolicyPeers` (kafka.yaml).
 */
function storePolicies(t: Topology): Doc[] {
  const clients = storeClients(t);
  const from = (services: readonly string[]) => ({ podSelector: { matchExpressions: [{ key: "app.kubernetes.io/name", operator: "In", values: [...services] }] } });
  const operator = (ns: string) => ({ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": ns } } });
  const tcp = (...ports: number[]) => ports.map((port) => ({ port, protocol: "TCP" }));
  const policy = (name: string, podSelector: Doc, ingress: Doc[]): Doc => ({
    apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy", metadata: { name, labels: { "app.kubernetes.io/part-of": "taskmesh" } },
    spec: { podSelector, policyTypes: ["Ingress"], ingress },
  });
  const pg = { matchLabels: { "cnpg.io/cluster": STORES.postgresCluster } };
  const redis = { matchLabels: { "app.kubernetes.io/name": STORES.redisFailover, "app.kubernetes.io/part-of": "redis-failover" } };
  return [
    policy(`${STORES.postgresCluster}-clients`, pg, [
      { from: [from(clients.postgres)], ports: tcp(PORTS.postgres) },
      // Streaming replication between instances; the operator's status and management calls.
      { from: [{ podSelector: pg }], ports: tcp(PORTS.postgres, 8000) },
      { from: [operator("cnpg-system")], ports: tcp(PORTS.postgres, 8000) },
      { from: [operator("monitoring")], ports: tcp(9187) },
    ]),
    policy(`${STORES.redisFailover}-clients`, redis, [
      { from: [from(clients.redis)], ports: tcp(PORTS.redis) },
      // Replication and Sentinel among the failover's own pods; the operator checks both.
      { from: [{ podSelector: redis }], ports: tcp(PORTS.redis, 26379) },
      { from: [operator("redis-operator")], ports: tcp(PORTS.redis, 26379) },
    ]),
  ];
}

/** The namespace's default: a mesh pod takes no connection that a policy above does not allow. */
function defaultDeny(): Doc {
  return {
    apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy",
    metadata: { name: "mesh-default-deny", labels: { "app.kubernetes.io/part-of": "taskmesh" } },
    spec: { podSelector: { matchLabels: { "taskmesh.dev/mesh": "true" } }, policyTypes: ["Ingress"] },
  };
}

export { NAMESPACE };
