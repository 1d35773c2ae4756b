import type { LedgerServiceService } from "@taskmesh/contracts/gen/taskmesh/ledger/v1/ledger";
import type { ServiceHandlers } from "@taskmesh/kit";
import { batchHandlers } from "./batch-handlers.js";
import type { LedgerStore } from "./ledger-store.js";
import { lifecycleHandlers } from "./lifecycle-handlers.js";
import { queueHandlers } from "./queue-handlers.js";
import type { QueueStore } from "./queue-store.js";
import { readHandlers } from "./read-handlers.js";
import { workerHandlers } from "./worker-handlers.js";
import type { WorkerStore } from "./worker-store.js";
import { workflowHandlers } from "./workflow-handlers.js";
import type { WorkflowStore } from "./workflow-store.js";

/** Methods that may commit outbox rows. */
const WRITES = new Set(["createTask", "createTasks", "completeTasks", "startTask", "recordProgress", "completeTask", "failTask", "cancelTask", "releaseTask", "expireLeases", "reapTimeouts", "markWorkerGone", "createWorkflow", "cancelWorkflow", "spawnChildren", "parkTask"]);

/**
 * The LedgerService handlers over the task, queue and worker stores;
 * `afterWrite` runs after every call that may have committed outbox rows
 * (the ledger nudges its outbox relay with it).
 */
export function ledgerHandlers(store: LedgerStore, queue: QueueStore, workers: WorkerStore, workflows: WorkflowStore, afterWrite?: () => void): ServiceHandlers<typeof LedgerServiceService> {
  const handlers = baseHandlers(store, queue, workers, workflows);
  if (!afterWrite) return handlers;
  const wrapped: Record<string, unknown> = { ...handlers };
  for (const name of WRITES) {
    const handler = handlers[name as keyof typeof handlers] as (...args: unknown[]) => Promise<unknown>;
    wrapped[name] = async (...args: unknown[]) => {
      const result = await handler(...args);
      afterWrite();
      return result;
    };
  }
  return wrapped as ServiceHandlers<typeof LedgerServiceService>;
}

function baseHandlers(store: LedgerStore, queue: QueueStore, workers: WorkerStore, workflows: WorkflowStore): ServiceHandlers<typeof LedgerServiceService> {
  return {
    ...batchHandlers(store, workflows), ...lifecycleHandlers(store, workflows), ...readHandlers(store), ...queueHandlers(queue), ...workerHandlers(workers),
    ...workflowHandlers(workflows),
  };
}
