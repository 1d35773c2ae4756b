import type { WorkerServiceService } from "../../../gen/taskmesh/coordinator/v1/worker_service.js";
import { requireScope, type ServiceHandlers } from "../../kit/src/index.js";
import type { Bus } from "./bus.js";
import type { Dispatcher, LedgerClient } from "./dispatcher.js";
import type { LedgerBatches } from "./ledger-batches.js";
import { Connection } from "./worker-connection.js";

/** Timing of worker sessions. */
export interface SessionTiming {
  /** How often workers heartbeat, in ms. */
  readonly heartbeatMs: number;
  /** How long a worker has to send `register`, in ms. */
  readonly registerTimeoutMs: number;
}

/** What the WorkerService handlers need. */
export interface WorkerServiceDeps {
  readonly ledger: LedgerClient;
  /** Completions go through it, grouped under load. */
  readonly batches: LedgerBatches;
  readonly dispatcher: Dispatcher;
  readonly bus: Bus;
  readonly coordinatorId: string;
  readonly timing: SessionTiming;
}

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
