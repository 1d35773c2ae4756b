import type { LedgerServiceService } from "@taskmesh/contracts/gen/taskmesh/ledger/v1/ledger";
import type { ServiceHandlers } from "@taskmesh/kit";
import type { LeaseCall } from "./lease-transitions.js";
import type { LedgerStore } from "./ledger-store.js";
import { toTask } from "./records.js";
import type { WorkflowStore } from "./workflow-store.js";
import {
  LEASE_MS, MAX_REASON_CHARS, Violations, boundedMs, checkLeaseCall, checkOutput, checkSequence, parseCreate, parseProgress, parseTaskError, parseTaskId,
} from "./validation.js";

/** The calls that move one task through its life: create, start, progress, complete, fail, cancel, release. */
export function lifecycleHandlers(store: LedgerStore, workflows: WorkflowStore): Pick<ServiceHandlers<typeof LedgerServiceService>, "createTask" | "startTask" | "recordProgress" | "completeTask" | "failTask" | "cancelTask" | "releaseTask"> {
  return {
    async createTask(request, ctx) {
      const { row, created } = await store.create(parseCreate(request), ctx.signal);
      return { task: toTask(row), created };
    },

    async startTask(request, ctx) {
      const v = new Violations();
      const call = leaseCall(request, v);
      const leaseMs = boundedMs(request.leaseDuration, LEASE_MS.min, LEASE_MS.max, "lease_duration", v, false);
      v.check();
      const { row, transition } = await store.start(call, leaseMs, ctx.signal);
      return { task: toTask(row), transition };
    },

    async recordProgress(request, ctx) {
      const v = new Violations();
      checkLeaseCall(request.taskId, request.leaseId, v);
      const report = parseProgress(request.progress, v);
      v.check();
      return { update: await store.progress({ taskId: request.taskId, leaseId: request.leaseId }, report, ctx.signal) };
    },

    async completeTask(request, ctx) {
      const v = new Violations();
      const call = leaseCall(request, v);
      const output = checkOutput(request.output, v);
      v.check();
      const { row, transition } = await store.complete(call, output, ctx.signal);
      return { task: toTask(row), transition, readyCapabilities: row.workflow_id === null ? [] : (await workflows.readyAfter([row.id], ctx.signal)).get(row.id) ?? [] };
    },

    async failTask(request, ctx) {
      const v = new Violations();
      const call = leaseCall(request, v);
      const error = parseTaskError(request.error, v);
      v.check();
      const { row, transition, willRetry } = await store.fail(call, error, ctx.signal);
      return { task: toTask(row), transition, willRetry };
    },

    async cancelTask(request, ctx) {
      const taskId = parseTaskId(request.taskId, "task_id");
      const v = new Violations();
      if (request.reason.length > MAX_REASON_CHARS) v.add("reason", `is longer than ${MAX_REASON_CHARS} characters`, "VAL_REASON_TOO_LONG");
      if (request.actor.length > 256) v.add("actor", "is longer than 256 characters");
      checkSequence(request.expectedSequence, v);
      v.check();
      const { row, transition, endedLease } = await store.cancel(taskId, request.reason, request.actor, request.expectedSequence, ctx.signal);
      return { task: toTask(row), transition, endedLease, alreadyCancelled: transition === undefined };
    },

    async releaseTask(request, ctx) {
      const v = new Violations();
      const call = leaseCall(request, v);
      if (request.reason.length > MAX_REASON_CHARS) v.add("reason", `is longer than ${MAX_REASON_CHARS} characters`);
      v.check();
      const { row, transition } = await store.release(call, request.reason, ctx.signal);
      return { task: toTask(row), transition };
    },
  };
}

/** Checks a worker-side call's task id, lease id and expected sequence, and returns them as the store takes them. */
export function leaseCall(request: { taskId: string; leaseId: string; expectedSequence?: bigint | undefined }, v: Violations): LeaseCall {
  checkLeaseCall(request.taskId, request.leaseId, v);
  checkSequence(request.expectedSequence, v);
  return { taskId: request.taskId, leaseId: request.leaseId, expectedSequence: request.expectedSequence };
}
