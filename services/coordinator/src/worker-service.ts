import type { WorkerServiceService } from "@taskmesh/contracts/gen/taskmesh/coordinator/v1/worker_service";
import { requireScope, type ServiceHandlers } from "@taskmesh/kit";
import { Connection } from "./worker-connection.js";
import type { WorkerServiceDeps } from "./worker-deps.js";

/**
 * WorkerService: one Connect stream per worker (see the contract's
 * protocol). Every worker message becomes a ledger call; messages about one
 * task are handled in order, different tasks concurrently.
 */
export function workerService(deps: WorkerServiceDeps): ServiceHandlers<typeof WorkerServiceService> {
  return {
    connect: async (requests, send, ctx) => {
      requireScope(ctx.metadata, "worker");
      return new Connection(deps, requests, send, ctx).run();
    },
  };
}
