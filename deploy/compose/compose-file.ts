/**
 * deploy/compose/compose.yaml, generated from deploy/topology.yaml: the
 * mesh of `up` from official images and the taskmesh image. Each service
 * replica is two containers sharing one network namespace, its sidecar
 * Envoy (which owns the namespace and the replica's name on the network)
 * and its app; the edge is one more Envoy. What may not be committed
 * (certificates, keys, passwords) and what follows from the topology at run
 * time (every Envoy's config) is made by the `mesh-init` container
 * (./init.ts) before anything else starts. Start order follows gRPC health:
 * an app is healthy once it answers SERVING and its sidecar is ready.
 */
import { stringify } from "yaml";
import { SERVICES } from "@taskmesh/local/plan";
import { KAFKA_TOPICS } from "@taskmesh/local/provision/kafka";
import { jaegerConfig } from "@taskmesh/local/provision/jaeger";
import { pinned } from "@taskmesh/local/provision/versions";
import { healthServiceOf, type Topology } from "@taskmesh/mesh/topology";
import { IMAGE_UID, MESH_DIR, PORTS, envoyArgs } from "../container/layout.js";
import { SECRETS_DIR, STORES, serviceEnv } from "../container/service-env.js";
import { COMPOSE_HOSTS, DATABASE, MESH_VOLUME_DIR, composeInstances } from "./network.js";

/** A read-only (unless `write`) mount of one folder of the `mesh` volume. */
function meshMount(subpath: string, target: string, write = false): Record<string, unknown> {
  return { type: "volume", source: "mesh", target, read_only: !write, volume: { subpath } };
}

/** The taskmesh image compose builds from the repository's Dockerfile (TASKMESH_IMAGE names another). */
const IMAGE = "${TASKMESH_IMAGE:-taskmesh:local}";

const healthy = { condition: "service_healthy" } as const;

/** The compose file as an object (see {@link composeYaml}). */
export function composeFile(t: Topology): Record<string, unknown> {
  const envoyImage = pinned("envoy").image!;
  const taskmesh = { image: IMAGE, build: { context: "../..", dockerfile: "Dockerfile" }, init: true, restart: "unless-stopped" };
  const initDone = { "mesh-init": { condition: "service_completed_successfully" } };
  const services: Record<string, unknown> = {
    "mesh-init": {
      ...taskmesh, restart: "no", command: ["compose-init", MESH_VOLUME_DIR],
      volumes: [{ type: "volume", source: "mesh", target: MESH_VOLUME_DIR }],
    },
    postgres: {
      image: pinned("postgres").image,
      environment: { POSTGRES_USER: DATABASE, POSTGRES_DB: DATABASE, POSTGRES_PASSWORD_FILE: `${SECRETS_DIR}/password` },
      volumes: [meshMount("secrets/postgres", SECRETS_DIR), { type: "volume", source: "postgres", target: "/var/lib/postgresql" }],
      healthcheck: { test: ["CMD", "pg_isready", "-h", "127.0.0.1", "-U", DATABASE, "-d", DATABASE], interval: "2s", timeout: "2s", retries: 30, start_period: "10s" },
      depends_on: initDone,
      restart: "unless-stopped",
    },
    redis: {
      image: pinned("redis").image,
      volumes: [{ type: "volume", source: "redis", target: "/data" }],
      healthcheck: { test: ["CMD", "redis-cli", "ping"], interval: "2s", timeout: "2s", retries: 30 },
      restart: "unless-stopped",
    },
    kafka: {
      image: pinned("kafka").image,
      // One KRaft node, broker and controller; clients use the broker listener only.
      environment: {
        KAFKA_NODE_ID: "1",
        KAFKA_PROCESS_ROLES: "broker,controller",
        KAFKA_LISTENERS: `PLAINTEXT://:${PORTS.kafka},CONTROLLER://:9093`,
        KAFKA_ADVERTISED_LISTENERS: `PLAINTEXT://${COMPOSE_HOSTS.kafka}:${PORTS.kafka}`,
        KAFKA_LISTENER_SECURITY_PROTOCOL_MAP: "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        KAFKA_CONTROLLER_LISTENER_NAMES: "CONTROLLER",
        KAFKA_CONTROLLER_QUORUM_VOTERS: "1@kafka:9093",
        KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR: "1",
        KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR: "1",
        KAFKA_TRANSACTION_STATE_LOG_MIN_ISR: "1",
        KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS: "0",
        KAFKA_AUTO_CREATE_TOPICS_ENABLE: "false",
      },
      volumes: [{ type: "volume", source: "kafka", target: "/var/lib/kafka/data" }],
      healthcheck: {
        test: ["CMD", "/opt/kafka/bin/kafka-broker-api-versions.sh", "--bootstrap-server", `localhost:${PORTS.kafka}`],
        interval: "5s", timeout: "10s", retries: 30, start_period: "10s",
      },
      restart: "unless-stopped",
    },
    // The topics `up` creates (packages/local/src/provision/kafka.ts), with the same partitions.
    "kafka-topics": {
      image: pinned("kafka").image,
      entrypoint: ["/bin/sh", "-c"],
      command: [Object.entries(KAFKA_TOPICS).map(([topic, partitions]) =>
        `/opt/kafka/bin/kafka-topics.sh --bootstrap-server kafka:${PORTS.kafka} --create --if-not-exists --topic ${topic} --partitions ${partitions} --replication-factor 1`).join(" && ")],
      depends_on: { kafka: healthy },
      restart: "no",
    },
    jaeger: {
      image: pinned("jaeger").image,
      command: ["--config", "/etc/taskmesh/jaeger.yaml"],
      configs: [{ source: "jaeger", target: "/etc/taskmesh/jaeger.yaml" }],
      ports: [`127.0.0.1:${PORTS.jaegerUi}:${PORTS.jaegerUi}`],
      restart: "unless-stopped",
    },
  };
  const envoy = (name: string, volume: string) => ({
    image: envoyImage,
    // The image's user, which owns the files mesh-init wrote (Envoy's own image would switch to uid 101).
    user: `${IMAGE_UID}:${IMAGE_UID}`,
    command: envoyArgs(name === "edge" ? "edge" : "sidecar", name),
    volumes: [meshMount(volume, MESH_DIR)],
    restart: "unless-stopped",
  });
  const stores = {
    postgresUrl: `postgres://${DATABASE}@${COMPOSE_HOSTS.postgres}:${PORTS.postgres}/${DATABASE}`,
    redisUrl: `redis://${COMPOSE_HOSTS.redis}:${PORTS.redis}`,
    kafkaBrokers: `${COMPOSE_HOSTS.kafka}:${PORTS.kafka}`,
    otlpEndpoint: `http://${COMPOSE_HOSTS.jaeger}:${PORTS.otlpGrpc}`,
  };
  const instances = composeInstances(t);
  for (const { name, service } of instances) {
    const uses = STORES[service] ?? [];
    const needs = SERVICES[service]?.dependsOn ?? [];
    const secrets = uses.includes("postgres") || service === "identity";
    services[`${name}-sidecar`] = {
      ...envoy(name, `envoy/${name}`),
      // The replica's name on the network: other Envoys reach its inbound port by it.
      networks: { default: { aliases: [name] } },
      depends_on: { ...initDone, jaeger: { condition: "service_started" } },
    };
    services[name] = {
      ...taskmesh,
      command: [service],
      network_mode: `service:${name}-sidecar`,
      environment: {
        ...serviceEnv(t, service, stores),
        TASKMESH_INSTANCE: name,
        ...(service === "worker" ? { TASKMESH_WORKER_ID: name } : {}),
        ...(uses.includes("postgres") ? { PGPASSFILE: `${SECRETS_DIR}/pgpass` } : {}),
        ...(service === "identity" ? { TASKMESH_IDENTITY_KEK_FILE: `${SECRETS_DIR}/identity.kek`, TASKMESH_BOOTSTRAP_KEY_FILE: `${SECRETS_DIR}/bootstrap-api-key` } : {}),
      },
      ...(secrets ? { volumes: [meshMount(`secrets/${service}`, SECRETS_DIR, service === "identity")] } : {}),
      healthcheck: { test: ["CMD", "taskmesh", "probe", service in t.services ? healthServiceOf(t, service) : ""], interval: "2s", timeout: "3s", retries: 60, start_period: "5s" },
      // Its sidecar first (a restarted sidecar restarts the app, whose network it holds); then what it needs, healthy.
      depends_on: {
        [`${name}-sidecar`]: { condition: "service_started", restart: true },
        ...Object.fromEntries(needs.flatMap((d) => {
          if (d === "kafka") return [["kafka-topics", { condition: "service_completed_successfully" }]];
          if (d in COMPOSE_HOSTS) return [[d, healthy]];
          return instances.filter((i) => i.service === d).map((i) => [i.name, healthy]);
        })),
      },
      stop_grace_period: "20s",
    };
  }
  const edgeTargets = [...new Set(instances.filter((i) => t.services[i.service]?.callers.includes("edge")).map((i) => i.name))];
  services.edge = {
    ...envoy("edge", "envoy/edge"),
    ports: [`127.0.0.1:${PORTS.edge}:${PORTS.edge}`],
    depends_on: { ...initDone, ...Object.fromEntries(edgeTargets.map((n) => [n, healthy])) },
  };
  return {
    name: "taskmesh",
    services,
    volumes: { mesh: {}, postgres: {}, redis: {}, kafka: {} },
    // jaegerConfig writes no file: its stateDir is only where `up` puts it.
    configs: { jaeger: { content: jaegerConfig({ stateDir: "/etc/taskmesh", listenAddress: "0.0.0.0" }) } },
  };
}

/** The text of deploy/compose/compose.yaml. */
export function composeYaml(t: Topology): string {
  return [
    "# Generated from deploy/topology.yaml by deploy/compose/compose-file.ts (npm run deploy:generate); do not edit.",
    "# docker compose -f deploy/compose/compose.yaml up --build   (deploy/compose/README.md)",
    stringify(composeFile(t), { lineWidth: 0, aliasDuplicateObjects: false }),
  ].join("\n");
}
