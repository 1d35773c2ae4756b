import type { LedgerServiceService } from "@taskmesh/contracts/gen/taskmesh/ledger/v1/ledger";
import { invalidArgument, parseItem, type FieldViolation, type ServiceHandlers } from "@taskmesh/kit";
import { WORKFLOW_STEP_NAME } from "@taskmesh/contracts/workflow";
import { isUuid, isUuidV7 } from "./ids.js";
import type { LeaseCall } from "./lease-transitions.js";
import type { LedgerStore } from "./ledger-store.js";
import { toTask } from "./records.js";
import type { WorkflowStore } from "./workflow-store.js";
import {
  LEASE_MS, MAX_REASON_CHARS, Violations, boundedMs, checkLeaseCall, checkOutput, checkSequence, parseCreate, parseProgress, parseTaskError, parseTaskId,
} from "./validation.js";

/** The calls that move one task through its life: create, start, progress, complete, fail, cancel, release. */
export function lifecycleHandlers(store: LedgerStore, workflows: WorkflowStore): Pick<ServiceHandlers<typeof LedgerServiceService>, "createTask" | "startTask" | "recordProgress" | "completeTask" | "failTask" | "cancelTask" | "releaseTask" | "spawnChildren" | "parkTask"> {
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
      return { task: toTask(row), transition, readyCapabilities: row.workflow_id === null && row.parent_id === null ? [] : (await workflows.readyAfter([row.id], ctx.signal)).get(row.id) ?? [] };
    },

    async failTask(request, ctx) {
      const v = new Violations();
      const call = leaseCall(request, v);
      const error = parseTaskError(request.error, v);
      v.check();
      const { row, transition, willRetry } = await store.fail(call, error, ctx.signal);
      // A child that failed for good may be the last its parked parent awaited.
      const ready = row.parent_id === null || willRetry ? [] : (await workflows.readyAfter([row.id], ctx.signal)).get(row.id) ?? [];
      return { task: toTask(row), transition, willRetry, readyCapabilities: ready };
    },

    async spawnChildren(request, ctx) {
      const v = new Violations();
      checkLeaseCall(request.taskId, request.leaseId, v);
      if (request.children.length === 0 || request.children.length > 1000) v.add("children", "must hold 1..1000 children");
      v.check();
      const found: FieldViolation[] = [];
      const steps = new Set<string>();
      const children = request.children.map((c, i) => {
        if (!WORKFLOW_STEP_NAME.test(c.step)) found.push({ field: `children[${i}].step`, description: "must be 1..63 characters of a-z 0-9 . _ -, starting with a letter or digit" });
        else if (steps.has(c.step)) found.push({ field: `children[${i}].step`, description: `repeats ${c.step}` });
        steps.add(c.step);
        if (!c.task || !isUuidV7(c.task.id)) {
          found.push({ field: `children[${i}].task.id`, description: "must be a UUIDv7 in canonical lower-case form" });
          return undefined;
        }
        if (c.task.idempotencyKey !== "" || c.task.leaseToWorkerId !== "") found.push({ field: `children[${i}].task`, description: "takes no idempotency key and no lease (the step is its key)" });
        const task = c.task;
        const parsed = parseItem(`children[${i}].task`, found, () => parseCreate(task));
        return parsed && { step: c.step, task: { ...parsed, id: task.id } };
      });
      if (found.length > 0) throw invalidArgument(found);
      const spawned = await store.spawn({ taskId: request.taskId, leaseId: request.leaseId }, children.map((c) => c!), ctx.signal);
      return { children: spawned.map((s) => toTask(s.row)), created: spawned.map((s) => s.created) };
    },

    async parkTask(request, ctx) {
      const v = new Violations();
      checkLeaseCall(request.taskId, request.leaseId, v);
      if (request.children.length === 0 || request.children.length > 10_000) v.add("children", "must name 1..10000 children");
      request.children.forEach((id, i) => { if (!isUuid(id)) v.add(`children[${i}]`, "must be a task id (a lower-case UUID)"); });
      v.check();
      const { row, transition } = await store.park({ taskId: request.taskId, leaseId: request.leaseId }, request.children, request.any, ctx.signal);
      return { task: toTask(row), transition };
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
