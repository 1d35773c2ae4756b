import type { LedgerServiceService } from "@taskmesh/contracts/gen/taskmesh/ledger/v1/ledger";
import type { ServiceHandlers } from "@taskmesh/kit";
import { isUuid } from "./ids.js";
import type { QueueStore } from "./queue-store.js";
import { toTask } from "./records.js";
import { LEASE_MS, Violations, boundedMs, isCapability, parseLimit } from "./validation.js";

/** The queue calls: claims, assignments and lease renewals, and the maintenance passes that take tasks back. */
export function queueHandlers(queue: QueueStore): Pick<ServiceHandlers<typeof LedgerServiceService>, "claimTasks" | "assignTasks" | "renewLeases" | "expireLeases" | "reapTimeouts"> {
  return {
    async claimTasks(request, ctx) {
      const v = new Violations();
      if (request.workerId === "" || request.workerId.length > 256) v.add("worker_id", "is required (at most 256 characters)");
      if (request.capabilities.length === 0) v.add("capabilities", "at least one capability is required");
      const seen = new Set<string>();
      request.capabilities.forEach((q, i) => {
        if (!isCapability(q.capability)) v.add(`capabilities[${i}].capability`, "is not a capability name");
        else if (seen.has(q.capability)) v.add(`capabilities[${i}].capability`, "is given twice");
        seen.add(q.capability);
        if (!Number.isInteger(q.maxTasks) || q.maxTasks < 1 || q.maxTasks > 1000) v.add(`capabilities[${i}].max_tasks`, "must be between 1 and 1000");
      });
      if (!Number.isInteger(request.maxTasks) || request.maxTasks < 1 || request.maxTasks > 1000) v.add("max_tasks", "must be between 1 and 1000");
      const leaseMs = boundedMs(request.leaseDuration, LEASE_MS.min, LEASE_MS.max, "lease_duration", v) ?? 0;
      v.check();
      const rows = await queue.claim(request.workerId, request.capabilities.map((q) => ({ capability: q.capability, max: q.maxTasks })), request.maxTasks, leaseMs, ctx.signal);
      return { tasks: rows.map((r) => toTask(r)) };
    },

    async assignTasks(request, ctx) {
      const v = new Violations();
      if (!isCapability(request.capability)) v.add("capability", "is not a capability name");
      if (request.workerIds.length === 0 || request.workerIds.length > 1000) v.add("worker_ids", "must hold 1..1000 slots");
      request.workerIds.forEach((id, i) => { if (id === "" || id.length > 256) v.add(`worker_ids[${i}]`, "is not a worker id (1..256 characters)"); });
      const leaseMs = boundedMs(request.leaseDuration, LEASE_MS.min, LEASE_MS.max, "lease_duration", v) ?? 0;
      v.check();
      const rows = await queue.assign(request.capability, request.workerIds, leaseMs, ctx.signal);
      return { tasks: rows.map((r) => toTask(r)) };
    },

    async renewLeases(request, ctx) {
      const v = new Violations();
      if (request.workerId === "") v.add("worker_id", "is required");
      if (request.leaseIds.length > 1000) v.add("lease_ids", "at most 1000 lease ids");
      request.leaseIds.forEach((id, i) => { if (!isUuid(id)) v.add(`lease_ids[${i}]`, "is not a lease id"); });
      const leaseMs = boundedMs(request.leaseDuration, LEASE_MS.min, LEASE_MS.max, "lease_duration", v) ?? 0;
      v.check();
      return queue.renew(request.workerId, [...new Set(request.leaseIds)], leaseMs, ctx.signal);
    },

    async expireLeases(request, ctx) {
      return queue.expireLeases(parseLimit(request.limit), ctx.signal);
    },

    async reapTimeouts(request, ctx) {
      return queue.reapTimeouts(parseLimit(request.limit), ctx.signal);
    },
  };
}
