import type { LedgerServiceService } from "@taskmesh/contracts/gen/taskmesh/ledger/v1/ledger";
import { WorkerState } from "@taskmesh/contracts/gen/taskmesh/worker/v1/worker";
import { decodePageToken, encodePageToken, invalidArgument, pageSize, type ServiceHandlers } from "@taskmesh/kit";
import { scopeOf } from "./read-handlers.js";
import { toWorker } from "./records.js";
import { Violations, checkWorkerStates, isCapability } from "./validation.js";
import type { WorkerStore } from "./worker-store.js";

/** The worker records: registrations and heartbeats, the end of a session, listings. */
export function workerHandlers(workers: WorkerStore): Pick<ServiceHandlers<typeof LedgerServiceService>, "upsertWorker" | "markWorkerGone" | "listWorkers"> {
  return {
    async upsertWorker(request, ctx) {
      const v = new Violations();
      const info = request.worker;
      if (!info || info.workerId === "" || info.workerId.length > 256) v.add("worker.worker_id", "is required (at most 256 characters)", "VAL_INVALID_REGISTRATION");
      info?.capabilities.forEach((c, i) => { if (!isCapability(c.name)) v.add(`worker.capabilities[${i}].name`, "is not a capability name", "VAL_INVALID_REGISTRATION"); });
      if (request.sessionId === "" || request.sessionId.length > 256) v.add("session_id", "is required (at most 256 characters)", "VAL_INVALID_REGISTRATION");
      if (request.state !== WorkerState.WORKER_STATE_CONNECTED && request.state !== WorkerState.WORKER_STATE_DRAINING) {
        v.add("state", "must be CONNECTED or DRAINING", "VAL_INVALID_REGISTRATION");
      }
      if (!Number.isInteger(request.inFlight) || request.inFlight < 0) v.add("in_flight", "must not be negative", "VAL_INVALID_REGISTRATION");
      if (!(request.load >= 0 && request.load <= 1)) v.add("load", "must be between 0.0 and 1.0", "VAL_INVALID_REGISTRATION");
      v.check();
      const { worker, replacedSessionId } = await workers.upsert({
        info: info!, sessionId: request.sessionId, coordinatorId: request.coordinatorId,
        state: request.state === WorkerState.WORKER_STATE_CONNECTED ? "CONNECTED" : "DRAINING",
        newSession: request.newSession, inFlight: request.inFlight, load: request.load,
      }, ctx.signal);
      return { worker: toWorker(worker), replacedSessionId };
    },

    async markWorkerGone(request, ctx) {
      const v = new Violations();
      if (request.workerId === "") v.add("worker_id", "is required");
      if (request.sessionId === "") v.add("session_id", "is required");
      v.check();
      const { worker, reclaimed } = await workers.markGone(request.workerId, request.sessionId, request.expireLeases, ctx.signal);
      return { worker: toWorker(worker), reclaimed };
    },

    async listWorkers(request, ctx) {
      const v = new Violations();
      checkWorkerStates(request.states, v);
      if (request.capability !== "" && !isCapability(request.capability)) v.add("capability", "is not a capability name");
      v.check();
      const limit = pageSize(request.pageSize);
      const filter = {
        states: [...new Set(request.states.map((s) => WorkerState[s].replace(/^WORKER_STATE_/, "")))],
        capability: request.capability,
        seenAfter: request.seenAfter ?? null,
      };
      const scope = scopeOf("workers", filter);
      const cursor = decodePageToken(request.pageToken, scope);
      if (cursor !== undefined && typeof cursor !== "string") {
        throw invalidArgument([{ field: "page_token", description: "not a page token of this query" }], "VAL_INVALID_PAGE_TOKEN");
      }
      const rows = await workers.list(filter, cursor ?? "", limit + 1, ctx.signal);
      const page = rows.slice(0, limit);
      return {
        workers: page.map(toWorker),
        nextPageToken: rows.length > limit ? encodePageToken(scope, page[page.length - 1]!.worker_id) : "",
      };
    },
  };
}
