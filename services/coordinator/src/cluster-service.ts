import type { ClusterServiceService } from "@taskmesh/contracts/gen/taskmesh/coordinator/v1/cluster_service";
import type { WorkerStatus } from "@taskmesh/contracts/gen/taskmesh/worker/v1/worker";
import { requireScope, toDuration, type ServiceHandlers } from "@taskmesh/kit";
import type { QueueStore } from "@taskmesh/ledger-service";
import type { LedgerClient } from "./dispatcher.js";

/** How long a worker that left stays listed. */
const GONE_LISTED_MS = 3_600_000;
/** Most workers listed. */
const MAX_WORKERS = 1000;

/** What ClusterService reads. */
export interface ClusterServiceDeps {
  readonly ledger: LedgerClient;
  readonly queue: Pick<QueueStore, "queueStats">;
}

/** ClusterService: the workers and the queue of each capability, from the ledger. */
export function clusterService(deps: ClusterServiceDeps): ServiceHandlers<typeof ClusterServiceService> {
  return {
    async listWorkers(_request, ctx) {
      requireScope(ctx.metadata, "tasks:read");
      const workers: WorkerStatus[] = [];
      let pageToken = "";
      do {
        const page = await deps.ledger.listWorkers({
          states: [], capability: "", seenAfter: new Date(Date.now() - GONE_LISTED_MS), pageSize: MAX_WORKERS - workers.length, pageToken,
        }, { parent: ctx });
        workers.push(...page.workers);
        pageToken = page.nextPageToken;
      } while (pageToken !== "" && workers.length < MAX_WORKERS);
      workers.sort((a, b) => (a.info!.workerId < b.info!.workerId ? -1 : a.info!.workerId > b.info!.workerId ? 1 : 0));
      return { workers };
    },

    async listQueues(_request, ctx) {
      requireScope(ctx.metadata, "tasks:read");
      const { readAt, queues } = await deps.queue.queueStats(ctx.signal);
      return {
        readAt,
        queues: queues.map((q) => ({
          capability: q.capability, pending: q.pending, running: q.running,
          oldestPendingAge: toDuration(q.oldestDue ? Math.max(0, readAt.getTime() - q.oldestDue.getTime()) : 0),
          oldestPendingSince: q.oldestDue,
        })),
      };
    },
  };
}
