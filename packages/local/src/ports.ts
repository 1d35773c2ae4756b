/** A fixed port from its variable, else the default; anything but a port number is refused, naming the variable. */
function port(variable: string, fallback: number): number {
  const raw = process.env[variable]?.trim();
  if (!raw) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new Error(`${variable}: expected a port number, got ${JSON.stringify(raw)}`);
  return n;
}

/** The fixed addresses of the design ("Topology and ports"), each overridable by its variable. */
export function fixedPorts() {
  return {
    postgres: port("TASKMESH_POSTGRES_PORT", 15432),
    redis: port("TASKMESH_REDIS_PORT", 16379),
    kafka: port("TASKMESH_KAFKA_PORT", 19092),
    jaegerUi: port("TASKMESH_JAEGER_PORT", 16686),
    otlpGrpc: port("TASKMESH_OTLP_GRPC_PORT", 4317),
    otlpHttp: port("TASKMESH_OTLP_HTTP_PORT", 4318),
    jaegerQueryGrpc: port("TASKMESH_JAEGER_GRPC_PORT", 16685),
    edge: port("TASKMESH_EDGE_PORT", 8080),
    edgeAdmin: port("TASKMESH_EDGE_ADMIN_PORT", 9901),
  };
}
