import type { LedgerServiceService } from "@taskmesh/contracts/gen/taskmesh/ledger/v1/ledger";
import { MeshError, invalidArgument, toRpcStatus, type CallContext, type ServiceHandlers } from "@taskmesh/kit";
import type { LedgerStore } from "./ledger-store.js";
import { leaseCall } from "./lifecycle-handlers.js";
import { toTask } from "./records.js";
import type { TaskRow } from "./sql/tasks.js";
import { Violations, checkOutput, parseCreate, type NewTask } from "./validation.js";
import type { WorkflowStore } from "./workflow-store.js";
import type { Committed } from "./writer.js";

/** The most items of one batch call. */
const MAX_BATCH = 1000;

function checkBatch(items: readonly unknown[]): void {
  if (items.length === 0 || items.length > MAX_BATCH) throw invalidArgument([{ field: "tasks", description: `must hold 1..${MAX_BATCH} items` }]);
}

/** One item's answer in a batch response: the response, or the error as `google.rpc.Status`. */
function itemResult<R>(outcome: R | MeshError): { $case: "response"; value: R } | { $case: "error"; value: ReturnType<typeof toRpcStatus> } {
  return outcome instanceof MeshError ? { $case: "error", value: toRpcStatus(outcome) } : { $case: "response", value: outcome };
}

/** How a batch call reports that its items had to run one by one. */
function fallback(ctx: CallContext): { signal: AbortSignal; onFallback: (error: unknown) => void } {
  return { signal: ctx.signal, onFallback: (error) => ctx.log.warn({ err: error }, "a batch failed as a whole; its items ran one by one") };
}

/** Validates `item` with `parse`; its INVALID_ARGUMENT becomes its own answer instead of the batch's. */
function parsed<T>(parse: () => T): T | MeshError {
  try {
    return parse();
  } catch (error) {
    if (error instanceof MeshError) return error;
    throw error;
  }
}

/** The ids of the workflow tasks and child tasks among committed completions: their dependents (or parked parents) may be ready now. */
export function workflowTasks(committed: ReadonlyArray<Committed | MeshError>): string[] {
  return committed.flatMap((c) => (c instanceof MeshError || (c.row.workflow_id === null && c.row.parent_id === null) ? [] : [c.row.id]));
}

/** The batch calls: each item is validated and answered on its own, the valid ones written in one transaction. */
export function batchHandlers(store: LedgerStore, workflows: WorkflowStore): Pick<ServiceHandlers<typeof LedgerServiceService>, "createTasks" | "completeTasks"> {
  return {
    async createTasks(request, ctx) {
      checkBatch(request.tasks);
      const inputs = request.tasks.map((t) => parsed(() => parseCreate(t)));
      const valid = inputs.filter((n): n is NewTask => !(n instanceof MeshError));
      const answer = (r: { row: TaskRow; created: boolean } | MeshError) => (r instanceof MeshError ? r : { task: toTask(r.row), created: r.created });
      const done = (await store.batched(valid, (items) => store.createMany(items, ctx.signal), (n) => store.create(n, ctx.signal), fallback(ctx))).map(answer);
      let next = 0;
      return { results: inputs.map((n) => ({ result: itemResult(n instanceof MeshError ? n : done[next++]!) })) };
    },

    async completeTasks(request, ctx) {
      checkBatch(request.tasks);
      const inputs = request.tasks.map((r) => parsed(() => {
        const v = new Violations();
        const call = leaseCall(r, v);
        const output = checkOutput(r.output, v);
        v.check();
        return { call, output };
      }));
      const valid = inputs.filter((i): i is Exclude<typeof i, MeshError> => !(i instanceof MeshError));
      const committed = await store.batched(valid, (items) => store.completeMany(items, ctx.signal), (i) => store.complete(i.call, i.output, ctx.signal), fallback(ctx));
      const ready = await workflows.readyAfter(workflowTasks(committed), ctx.signal);
      const answer = (r: Committed | MeshError) => (r instanceof MeshError ? r : { task: toTask(r.row), transition: r.transition, readyCapabilities: ready.get(r.row.id) ?? [] });
      const done = committed.map(answer);
      let next = 0;
      return { results: inputs.map((i) => ({ result: itemResult(i instanceof MeshError ? i : done[next++]!) })) };
    },
  };
}
