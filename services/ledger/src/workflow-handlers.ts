import type { CreateWorkflowRequest, LedgerServiceService } from "@taskmesh/contracts/gen/taskmesh/ledger/v1/ledger";
import { FailurePolicy } from "@taskmesh/contracts/gen/taskmesh/task/v1/task";
import { graphViolations } from "@taskmesh/contracts/workflow";
import { Violations, parseItem, invalidArgument, type FieldViolation, type Reason, type ServiceHandlers } from "@taskmesh/kit";
import { isUuid, isUuidV7 } from "./ids.js";
import { HEX64, LABEL_KEY, MAX_REASON_CHARS, TRACE_ID, parseCreate } from "./validation.js";
import { toWorkflow, workflowNotFound, type NewWorkflow, type WorkflowStore } from "./workflow-store.js";

/** Validates a CreateWorkflow request: every task as CreateTask would, and the graph as a whole; INVALID_ARGUMENT with every violation, nothing stored. */
export function parseCreateWorkflow(r: CreateWorkflowRequest): NewWorkflow {
  const found: FieldViolation[] = [];
  const v = new Violations();
  if (!isUuidV7(r.id)) v.add("id", "must be a UUIDv7 in canonical lower-case form", "VAL_INVALID_WORKFLOW_ID");
  if (r.name.length > 256) v.add("name", "is longer than 256 characters");
  if (r.idempotencyKey.length > 256) v.add("idempotency_key", "is longer than 256 characters");
  if (!HEX64.test(r.requestHash)) v.add("request_hash", "must be the lower-case hex SHA-256 of the submit");
  if (r.traceId !== "" && !TRACE_ID.test(r.traceId)) v.add("trace_id", "must be 32 lower-case hex digits, or empty");
  if (r.createdBy.length > 256) v.add("created_by", "is longer than 256 characters");
  if (Object.keys(r.labels).length > 32 || Object.entries(r.labels).some(([k, val]) => !LABEL_KEY.test(k) || val.length > 256)) v.add("labels", "at most 32, keys of a-z 0-9 . _ / -, values of at most 256 characters");
  found.push(...v.all);
  const graph = graphViolations(r.tasks.map((t) => ({ name: t.name, dependsOn: t.dependsOn, input: t.task?.input })));
  found.push(...graph);
  const tasks = r.tasks.map((t, i) => {
    const prefix = `tasks[${i}].task`;
    if (!t.task) {
      found.push({ field: prefix, description: "is required" });
      return undefined;
    }
    if (t.task.idempotencyKey !== "" || t.task.leaseToWorkerId !== "") found.push({ field: prefix, description: "takes no idempotency key and no lease (the workflow's cover its tasks)" });
    if (!isUuidV7(t.task.id)) found.push({ field: `${prefix}.id`, description: "must be a UUIDv7 in canonical lower-case form" });
    const task = { ...t.task, createdBy: r.createdBy, traceId: r.traceId, traceparent: r.traceparent };
    return parseItem(prefix, found, () => parseCreate(task));
  });
  if (found.length > 0) {
    const cycle = found.find((f) => f.reason === "VAL_WORKFLOW_CYCLE");
    throw invalidArgument(found, (cycle?.reason ?? found[0]!.reason ?? "VAL_INVALID_ARGUMENT") as Reason);
  }
  const ids = new Map(r.tasks.map((t) => [t.name, t.task!.id]));
  return {
    id: r.id, name: r.name,
    failurePolicy: r.failurePolicy === FailurePolicy.FAILURE_POLICY_CONTINUE ? "CONTINUE" : "FAIL_FAST",
    idempotencyKey: r.idempotencyKey, requestHash: r.requestHash, createdBy: r.createdBy, labels: r.labels,
    traceId: r.traceId, traceparent: r.traceparent,
    tasks: r.tasks.map((t, i) => ({ task: { ...tasks[i]!, id: t.task!.id }, name: t.name, dependsOn: t.dependsOn.map((d) => ids.get(d)!) })),
  };
}

function parseWorkflowId(id: string): string {
  if (!isUuid(id)) throw invalidArgument([{ field: "id", description: "must be a workflow id (a lower-case UUID)", reason: "VAL_INVALID_WORKFLOW_ID" }], "VAL_INVALID_WORKFLOW_ID");
  return id;
}

/** CreateWorkflow, GetWorkflow and CancelWorkflow. */
export function workflowHandlers(workflows: WorkflowStore): Pick<ServiceHandlers<typeof LedgerServiceService>, "createWorkflow" | "getWorkflow" | "cancelWorkflow"> {
  return {
    async createWorkflow(request, ctx) {
      const { workflow, created, readyCapabilities } = await workflows.create(parseCreateWorkflow(request), ctx.signal);
      return { workflow: toWorkflow(workflow), created, readyCapabilities };
    },

    async getWorkflow(request, ctx) {
      const id = parseWorkflowId(request.id);
      const found = await workflows.get(id, ctx.signal);
      if (!found) throw workflowNotFound(id);
      return { workflow: toWorkflow(found) };
    },

    async cancelWorkflow(request, ctx) {
      const id = parseWorkflowId(request.id);
      if (request.reason.length > MAX_REASON_CHARS) {
        throw invalidArgument([{ field: "reason", description: `is longer than ${MAX_REASON_CHARS} characters`, reason: "VAL_REASON_TOO_LONG" }], "VAL_REASON_TOO_LONG");
      }
      const { workflow, endedLeases } = await workflows.cancel(id, request.reason, request.actor, ctx.signal);
      return { workflow: toWorkflow(workflow), endedLeases };
    },
  };
}
