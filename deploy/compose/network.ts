/** Names on compose's network and in its `mesh` volume, shared by the compose file and its init. */
import { instanceNames, type Topology } from "@taskmesh/mesh/topology";

/** Where compose's init writes, in the `mesh` volume: `envoy/<name>/` per Envoy, `secrets/<consumer>/`, `state/` (the CA). */
export const MESH_VOLUME_DIR = "/var/lib/taskmesh";
/** The host name of each store on compose's network. */
export const COMPOSE_HOSTS = Object.freeze({ postgres: "postgres", redis: "redis", kafka: "kafka", jaeger: "jaeger" });
/** The database and its owner. */
export const DATABASE = "taskmesh";

/** The replicas compose runs: the topology's counts, each named like `up` names them and reached by that name. */
export function composeInstances(t: Topology): { name: string; service: string; address: string }[] {
  return instanceNames(t).map(({ name, service }) => ({ name, service, address: name }));
}
