import { setTimeout as delay } from "node:timers/promises";
import { trace } from "@opentelemetry/api";
import type { SubmitTaskRequest, SubmitTaskResponse, TaskServiceService, WatchTaskResponse, WatchWorkflowResponse } from "@taskmesh/contracts/gen/taskmesh/coordinator/v1/task_service";
import { TaskState, TaskView, WorkflowState, type TaskTransition } from "@taskmesh/contracts/gen/taskmesh/task/v1/task";
import {
  Code, MeshError, exhausted, invalidArgument, randomIdBytes, requireScope, toDuration, toRpcStatus, uuidv7, type CallContext, type Send, type ServiceHandlers,
} from "@taskmesh/kit";
import type { Bus, TaskNews } from "./bus.js";
import type { KnownCapabilities } from "./capabilities.js";
import type { SubmitDedup } from "./dedup.js";
import type { Dispatcher, LedgerClient } from "./dispatcher.js";
import type { LedgerBatches } from "./ledger-batches.js";
import { TaskWrites } from "./task-writes.js";
import { checkList, isCapabilityName, parseSubmit, parseSubmitWorkflow, parseTaskId, parseWorkflowId } from "./validation.js";

/** Limits that keep the coordinator's memory bounded under any load. */
export interface Backpressure {
  /** Refuse submits while this many tasks are pending in the ledger. */
  readonly maxPending: number;
  /** Refuse submits while this many are in progress on this replica. */
  readonly maxInFlightSubmits: number;
}

/** What the TaskService handlers need. */
export interface TaskServiceDeps {
  readonly ledger: LedgerClient;
  /** Creates go through it, grouped under load. */
  readonly batches: LedgerBatches;
  readonly dispatcher: Dispatcher;
  readonly bus: Bus;
  readonly dedup: SubmitDedup;
  readonly capabilities: KnownCapabilities;
  readonly pending: PendingGauge;
  readonly limits: Backpressure;
  /** How often a watch re-reads the task's history even without news, in ms. */
  readonly watchPollMs: number;
}

const TERMINAL = new Set([TaskState.TASK_STATE_SUCCEEDED, TaskState.TASK_STATE_FAILED, TaskState.TASK_STATE_CANCELLED, TaskState.TASK_STATE_TIMED_OUT]);
/** Most news a watch buffers while its caller reads slowly; beyond it the watch re-reads the ledger instead. */
const WATCH_BUFFER = 256;

/**
 * How many tasks are pending, from the ledger's counts (refreshed by the
 * caller every second) plus this replica's submits since.
 */
export class PendingGauge {
  private counted = 0;
  private since = 0;

  set(count: number): void {
    this.counted = count;
    this.since = 0;
  }

  added(): void {
    this.since++;
  }

  get value(): number {
    return this.counted + this.since;
  }
}

/** The W3C trace id and traceparent of the current span; a fresh trace when tracing is off. */
function traceOfCall(): { traceId: string; traceparent: string } {
  const context = trace.getActiveSpan()?.spanContext();
  if (context && trace.isSpanContextValid(context)) {
    return { traceId: context.traceId, traceparent: `00-${context.traceId}-${context.spanId}-0${context.traceFlags & 1}` };
  }
  const traceId = randomIdBytes(16).toString("hex");
  return { traceId, traceparent: `00-${traceId}-${randomIdBytes(8).toString("hex")}-00` };
}

/** TaskService: submit, read, list, cancel and watch tasks, recorded in the ledger and dispatched to workers. */
export function taskService(deps: TaskServiceDeps): ServiceHandlers<typeof TaskServiceService> {
  const { ledger, dispatcher, bus, dedup, capabilities, pending, limits } = deps;
  const writes = new TaskWrites({ ledger, bus, slots: dispatcher });
  let inFlightSubmits = 0;

  /** Refuses `count` more submits when the replica or the queue is full. */
  const admit = (count: number): void => {
    if (inFlightSubmits + count > limits.maxInFlightSubmits) throw exhausted("RATE_QUEUE_FULL", "too many submits in progress on this coordinator; retry shortly", 100);
    if (pending.value + count > limits.maxPending) throw exhausted("RATE_QUEUE_FULL", `${pending.value} tasks are pending (the limit is ${limits.maxPending}); retry later`, 1000);
  };

  /**
   * The subject a submit is recorded under (its idempotency keys are scoped
   * to it): the token's subject; "" for calls from inside the mesh.
   */
  const submitter = (ctx: CallContext): string => {
    const principal = requireScope(ctx.metadata, "tasks:write");
    return principal.kind === "token" ? principal.subject : "";
  };

  /** One submit, admitted: validated, deduplicated, created (in a ledger batch with others in flight). */
  const submitOne = async (request: SubmitTaskRequest, subject: string, ctx: CallContext): Promise<SubmitTaskResponse> => {
    inFlightSubmits++;
    try {
      const known = capabilities.has(request.capability) || await capabilities.check(request.capability, ctx.signal);
      const submit = parseSubmit(request, () => known);
      const plan = submit.idempotencyKey === ""
        ? { action: "create" as const, taskId: uuidv7() }
        : await dedup.plan(subject, submit.idempotencyKey, submit.requestHash, uuidv7());
      if (plan.action === "read") {
        const found = await ledger.getTask({ id: plan.taskId, view: TaskView.TASK_VIEW_FULL }, { parent: ctx }).catch((error: unknown) => {
          if (MeshError.from(error).code === Code.NOT_FOUND) return undefined;
          throw error;
        });
        if (found?.task) return { task: found.task, deduplicated: true };
      }
      const { traceId, traceparent } = traceOfCall();
      // Sync match: with a free slot and nothing of its capability waiting, the task is created leased to that worker
      // and pushed to it right after the commit, with no AssignTasks of its own.
      const slot = dispatcher.reserve(submit.capability);
      let answer: Awaited<ReturnType<typeof deps.batches.create>>;
      try {
        answer = await deps.batches.create({
          id: plan.taskId, capability: submit.capability, input: submit.input, idempotencyKey: submit.idempotencyKey, requestHash: submit.requestHash,
          maxAttempts: submit.maxAttempts, timeout: toDuration(submit.timeoutMs), priority: submit.priority, labels: submit.labels,
          retryPolicy: submit.retryPolicy, createdBy: subject, traceId, traceparent,
          leaseToWorkerId: slot?.workerId ?? "", leaseDuration: slot ? dispatcher.leaseDuration : undefined,
        });
      } catch (error) {
        slot?.settle(undefined);
        throw error;
      }
      const { task, created } = answer;
      slot?.settle(created ? task : undefined);
      if (submit.idempotencyKey !== "") await dedup.committed(subject, submit.idempotencyKey, submit.requestHash, task!.id);
      if (created) {
        pending.added();
        if (!task?.lease) writes.ready([submit.capability]);
      }
      return { task, deduplicated: !created };
    } finally {
      inFlightSubmits--;
    }
  };

  return {
    async submitTask(request, ctx) {
      const subject = submitter(ctx);
      admit(1);
      return submitOne(request, subject, ctx);
    },

    async submitTasks(request, ctx) {
      const subject = submitter(ctx);
      if (request.tasks.length === 0 || request.tasks.length > 1000) throw invalidArgument([{ field: "tasks", description: "must hold 1..1000 tasks" }]);
      admit(request.tasks.length);
      const results = await Promise.all(request.tasks.map((r) => submitOne(r, subject, ctx).then(
        (value) => ({ result: { $case: "response" as const, value } }),
        (error: unknown) => {
          const e = MeshError.from(error);
          if (e.code === Code.INTERNAL) ctx.log.error({ err: e.cause ?? e }, "a submit of a batch failed");
          return { result: { $case: "error" as const, value: toRpcStatus(e) } };
        },
      )));
      return { results };
    },

    async getTask(request, ctx) {
      requireScope(ctx.metadata, "tasks:read");
      const id = parseTaskId(request.id);
      if (typeof TaskView[request.view] !== "string") throw invalidArgument([{ field: "view", description: `unknown view ${request.view}` }]);
      return ledger.getTask({ id, view: request.view || TaskView.TASK_VIEW_FULL }, { parent: ctx });
    },

    async getTaskHistory(request, ctx) {
      requireScope(ctx.metadata, "tasks:read");
      const id = parseTaskId(request.id);
      const page = await ledger.getTaskHistory({ taskId: id, afterSequence: undefined, pageSize: request.pageSize, pageToken: request.pageToken }, { parent: ctx });
      return { transitions: page.transitions, nextPageToken: page.nextPageToken };
    },

    async listTasks(request, ctx) {
      requireScope(ctx.metadata, "tasks:read");
      checkList(request);
      return ledger.listTasks({
        states: request.states, capabilities: request.capability === "" ? [] : [request.capability], createdAfter: request.createdAfter,
        createdBefore: request.createdBefore, workerId: "", createdBy: "", pageSize: request.pageSize, pageToken: request.pageToken,
        view: request.view || TaskView.TASK_VIEW_BASIC, workflowId: request.workflowId, parentId: request.parentId,
      }, { parent: ctx });
    },

    async cancelTask(request, ctx) {
      const actor = requireScope(ctx.metadata, "tasks:write").subject;
      const id = parseTaskId(request.id);
      if (request.reason.length > 256) throw invalidArgument([{ field: "reason", description: "is longer than 256 characters", reason: "VAL_REASON_TOO_LONG" }], "VAL_REASON_TOO_LONG");
      return { task: await writes.cancel({ taskId: id, reason: request.reason, actor, expectedSequence: request.expectedSequence }, { parent: ctx }) };
    },

    async submitWorkflow(request, ctx) {
      const subject = submitter(ctx);
      const known = new Set<string>();
      for (const capability of new Set(request.tasks.slice(0, 10_000).map((t) => t.task?.capability ?? ""))) {
        if (isCapabilityName(capability) && (capabilities.has(capability) || await capabilities.check(capability, ctx.signal))) known.add(capability);
      }
      const workflow = parseSubmitWorkflow(request, (capability) => known.has(capability));
      if (pending.value + workflow.tasks.length > limits.maxPending) {
        throw exhausted("RATE_QUEUE_FULL", `${pending.value} tasks are pending (the limit is ${limits.maxPending}); retry later`, 1000);
      }
      const { traceId, traceparent } = traceOfCall();
      const { workflow: stored, created } = await writes.createWorkflow({
        id: uuidv7(), name: workflow.name, failurePolicy: workflow.failurePolicy, idempotencyKey: workflow.idempotencyKey, requestHash: workflow.requestHash,
        createdBy: subject, traceId, traceparent, labels: workflow.labels,
        tasks: workflow.tasks.map(({ name, dependsOn, submit }) => ({
          name, dependsOn: [...dependsOn],
          task: {
            id: uuidv7(), capability: submit.capability, input: submit.input, idempotencyKey: "", requestHash: submit.requestHash, maxAttempts: submit.maxAttempts,
            timeout: toDuration(submit.timeoutMs), priority: submit.priority, labels: submit.labels, retryPolicy: submit.retryPolicy, createdBy: subject,
            traceId, traceparent, leaseToWorkerId: "", leaseDuration: undefined,
          },
        })),
      }, { parent: ctx });
      if (created) for (let i = 0; i < workflow.tasks.length; i++) pending.added();
      return { workflow: stored, deduplicated: !created };
    },

    async getWorkflow(request, ctx) {
      requireScope(ctx.metadata, "tasks:read");
      return ledger.getWorkflow({ id: parseWorkflowId(request.id) }, { parent: ctx });
    },

    async cancelWorkflow(request, ctx) {
      const actor = requireScope(ctx.metadata, "tasks:write").subject;
      const id = parseWorkflowId(request.id);
      if (request.reason.length > 256) throw invalidArgument([{ field: "reason", description: "is longer than 256 characters", reason: "VAL_REASON_TOO_LONG" }], "VAL_REASON_TOO_LONG");
      return { workflow: await writes.cancelWorkflow({ id, reason: request.reason, actor }, { parent: ctx }) };
    },

    watchTask: async (request, send, ctx) => {
      requireScope(ctx.metadata, "tasks:read");
      return watch(deps, request.id, request.afterSequence, send, ctx);
    },

    watchWorkflow: async (request, send, ctx) => {
      requireScope(ctx.metadata, "tasks:read");
      return watchWorkflow(deps, parseWorkflowId(request.id), send, ctx);
    },
  };
}

/**
 * One WatchWorkflow stream: the snapshot, then each task's new state, read
 * from the ledger every so often (a quarter second for a small workflow,
 * longer for a large one: its graph is read whole each time), until the
 * workflow is no longer RUNNING; then the workflow as it ended.
 */
async function watchWorkflow(deps: TaskServiceDeps, id: string, send: Send<WatchWorkflowResponse>, ctx: CallContext): Promise<void> {
  let current = (await deps.ledger.getWorkflow({ id }, { parent: ctx })).workflow!;
  await send({ event: { $case: "snapshot", value: current } });
  const everyMs = Math.min(2000, 250 + current.nodes.length / 10);
  const states = new Map(current.nodes.map((n) => [n.taskId, n.state]));
  while (current.state === WorkflowState.WORKFLOW_STATE_RUNNING) {
    await delay(everyMs, undefined, { signal: ctx.signal }).catch(() => undefined);
    ctx.signal.throwIfAborted();
    current = (await deps.ledger.getWorkflow({ id }, { parent: ctx })).workflow!;
    for (const node of current.nodes) {
      if (states.get(node.taskId) === node.state) continue;
      states.set(node.taskId, node.state);
      await send({ event: { $case: "node", value: node } });
    }
  }
  await send({ event: { $case: "ended", value: current } });
}

/**
 * One WatchTask stream: the snapshot, the replay after `afterSequence`, then
 * live news from the bus until the task ends. Transitions are always sent in
 * sequence order with none missing: a gap (a lost or late bus message) is
 * filled from the ledger's history, which is also re-read every
 * `watchPollMs`. Buffered news is bounded; past the bound the watch drops it
 * and re-reads the history instead.
 */
async function watch(deps: TaskServiceDeps, rawId: string, afterSequence: bigint | undefined, send: Send<WatchTaskResponse>, ctx: CallContext): Promise<void> {
  const id = parseTaskId(rawId);
  const { ledger, bus } = deps;
  const news: TaskNews[] = [];
  let overflow = false;
  let wakeUp: (() => void) | undefined;
  const unsubscribe = bus.onTask(id, (item) => {
    if (news.length >= WATCH_BUFFER) {
      overflow = true;
      news.length = 0;
    } else news.push(item);
    wakeUp?.();
  });
  try {
    const { task } = await ledger.getTask({ id, view: TaskView.TASK_VIEW_FULL }, { parent: ctx });
    const snapshot = task!;
    if (afterSequence !== undefined && (afterSequence < 0n || afterSequence > snapshot.sequence)) {
      throw invalidArgument([{ field: "after_sequence", description: `must be between 0 and the task's sequence ${snapshot.sequence}`, reason: "VAL_INVALID_SEQUENCE" }], "VAL_INVALID_SEQUENCE");
    }
    await send({ event: { $case: "snapshot", value: snapshot } });
    let last = afterSequence ?? snapshot.sequence;
    let ended = TERMINAL.has(snapshot.state);
    const emit = async (t: TaskTransition): Promise<void> => {
      if (t.sequence !== last + 1n) return;
      await send({ event: { $case: "transition", value: t } });
      last = t.sequence;
      if (TERMINAL.has(t.toState)) ended = true;
    };
    /** Sends every transition after `last` from the ledger's history (up to `upTo` when given). */
    const catchUp = async (upTo?: bigint): Promise<void> => {
      let pageToken = "";
      do {
        const page = await ledger.getTaskHistory({ taskId: id, afterSequence: last, pageSize: 1000, pageToken }, { parent: ctx });
        for (const t of page.transitions) {
          if (upTo !== undefined && t.sequence > upTo) return;
          await emit(t);
        }
        pageToken = page.nextPageToken;
      } while (pageToken !== "");
    };
    if (afterSequence !== undefined) await catchUp(snapshot.sequence);
    while (!ended) {
      if (news.length === 0 && !overflow) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, deps.watchPollMs);
          const onAbort = (): void => resolve();
          ctx.signal.addEventListener("abort", onAbort, { once: true });
          wakeUp = () => {
            clearTimeout(timer);
            ctx.signal.removeEventListener("abort", onAbort);
            resolve();
          };
        });
        wakeUp = undefined;
        ctx.signal.throwIfAborted();
        if (news.length === 0 && !overflow) {
          await catchUp();
          continue;
        }
      }
      if (overflow) {
        overflow = false;
        await catchUp();
        continue;
      }
      const item = news.shift()!;
      if (item.kind === "progress") {
        // Progress of a later transition than the last one sent: the bus missed that transition
        // (it can commit before this watch's subscription is in place); send it from the history first.
        if (item.update.sequence > last) await catchUp(item.update.sequence);
        if (item.update.sequence === last) await send({ event: { $case: "progress", value: item.update } });
        continue;
      }
      const t = item.transition;
      if (t.sequence <= last) continue;
      if (t.sequence === last + 1n) await emit(t);
      else await catchUp();
    }
  } finally {
    unsubscribe();
  }
}
