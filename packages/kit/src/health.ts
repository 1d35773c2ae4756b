import { service as healthDefinition } from "grpc-health-check";
import { notFound } from "./errors.js";
import type { ServiceHandlers } from "./handlers.js";

/** The generated `grpc.health.v1.Health` definition (from grpc-health-check). */
export const HEALTH_DEFINITION = healthDefinition as unknown as HealthDefinition;

/** A service's status as `grpc.health.v1` says it. */
export type ServingStatus = "SERVING" | "NOT_SERVING" | "SERVICE_UNKNOWN";

interface HealthRequest { service: string }
interface HealthResponse { status: ServingStatus }
interface Method<Req, Res> {
  path: string;
  requestStream: boolean;
  responseStream: boolean;
  requestSerialize: (v: Req) => Buffer;
  requestDeserialize: (b: Buffer) => Req;
  responseSerialize: (v: Res) => Buffer;
  responseDeserialize: (b: Buffer) => Res;
}
type HealthDefinition = {
  Check: Method<HealthRequest, HealthResponse> & { requestStream: false; responseStream: false };
  Watch: Method<HealthRequest, HealthResponse> & { requestStream: false; responseStream: true };
  List: Method<Record<string, never>, { statuses: Record<string, HealthResponse> }> & { requestStream: false; responseStream: false };
};

/**
 * Per-service serving status ("" is the whole server) and its watchers: a
 * watch gets the current status first, then each change, and is removed when
 * its call ends. Served by the kit's own call handling, so health watches end
 * at shutdown like every other stream instead of holding the drain open.
 */
export class HealthRegistry {
  private readonly statuses = new Map<string, ServingStatus>();
  private readonly watchers = new Map<string, Set<(status: ServingStatus) => void>>();

  /** Sets a service's status and tells its watchers when it changed. */
  set(service: string, status: "SERVING" | "NOT_SERVING"): void {
    if (this.statuses.get(service) === status) return;
    this.statuses.set(service, status);
    for (const watcher of this.watchers.get(service) ?? []) watcher(status);
  }

  /** The status of a service; SERVICE_UNKNOWN for one never set. */
  get(service: string): ServingStatus {
    return this.statuses.get(service) ?? "SERVICE_UNKNOWN";
  }

  /** Handlers for `grpc.health.v1.Health`: Check, Watch and List. */
  handlers(): ServiceHandlers<HealthDefinition> {
    return {
      Check: async ({ service }) => {
        const status = this.statuses.get(service);
        if (!status) throw notFound("RES_UNKNOWN_SERVICE", `no service ${JSON.stringify(service)} here`, { service });
        return { status };
      },
      Watch: async ({ service }, send, ctx) => {
        const updates: ServingStatus[] = [];
        let wake: (() => void) | undefined;
        const watcher = (status: ServingStatus): void => {
          updates.push(status);
          wake?.();
        };
        let set = this.watchers.get(service);
        if (!set) this.watchers.set(service, (set = new Set()));
        set.add(watcher);
        const ended = new Promise<never>((_, reject) => {
          if (ctx.signal.aborted) reject(ctx.signal.reason);
          else ctx.signal.addEventListener("abort", () => reject(ctx.signal.reason), { once: true });
        });
        ended.catch(() => undefined);
        try {
          await send({ status: this.get(service) });
          for (;;) {
            while (updates.length > 0) await send({ status: updates.shift()! });
            await Promise.race([new Promise<void>((resolve) => (wake = resolve)), ended]);
          }
        } finally {
          set.delete(watcher);
          if (set.size === 0) this.watchers.delete(service);
        }
      },
      List: async () => ({ statuses: Object.fromEntries([...this.statuses].map(([service, status]) => [service, { status }])) }),
    };
  }
}
