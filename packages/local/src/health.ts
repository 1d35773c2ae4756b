import { credentials, makeGenericClientConstructor, type ServiceError } from "@grpc/grpc-js";
import { service as healthService } from "grpc-health-check";

/** What a health check found: a `grpc.health.v1` status, or why there was none. */
export type HealthStatus = "SERVING" | "NOT_SERVING" | "UNKNOWN" | "SERVICE_UNKNOWN" | "UNREACHABLE";

const Health = makeGenericClientConstructor(healthService, "Health");

interface HealthClient {
  check(request: { service: string }, options: { deadline: number }, callback: (error: ServiceError | null, response?: { status: string }) => void): void;
  close(): void;
}

/** One `grpc.health.v1.Health/Check` of `service` ("" = the whole server) at `address`, bounded by `timeoutMs`. */
export async function checkHealth(address: string, service = "", timeoutMs = 1000): Promise<HealthStatus> {
  const client = new Health(address, credentials.createInsecure()) as unknown as HealthClient;
  try {
    return await new Promise<HealthStatus>((resolve) =>
      client.check({ service }, { deadline: Date.now() + timeoutMs }, (error, response) => {
        if (error) resolve(error.code === 5 ? "SERVICE_UNKNOWN" : "UNREACHABLE");
        else resolve((response?.status ?? "UNKNOWN") as HealthStatus);
      }));
  } finally {
    client.close();
  }
}
