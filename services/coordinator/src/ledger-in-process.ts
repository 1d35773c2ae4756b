import { SpanKind, context, trace } from "@opentelemetry/api";
import { LedgerServiceService } from "@taskmesh/contracts/gen/taskmesh/ledger/v1/ledger";
import { Metadata } from "@grpc/grpc-js";
import { Code, MeshError, deadlineExceeded, deadlineFor, signalsOf, type CallContext, type CallOptions, type Logger, type ServiceHandlers } from "@taskmesh/kit";
import type { LedgerClient } from "./dispatcher.js";

/**
 * The LedgerService methods a task's own path calls: every write (submit,
 * assignment, start, progress, result, release, cancel, lease sweeps and
 * worker records). They run in the coordinator, on its own Postgres pool,
 * with the ledger's own handlers: the same validation, statements and
 * answers as the service, without a process hop or a protobuf round trip.
 * Reads (GetTask, ListTasks, CountTasks, GetTaskHistory, ListWorkers) stay
 * calls to the ledger service, the contract for reads and administration.
 */
export const IN_PROCESS_METHODS = [
  "createTasks", "assignTasks", "renewLeases", "startTask", "recordProgress", "completeTask", "completeTasks",
  "failTask", "cancelTask", "releaseTask", "expireLeases", "reapTimeouts", "upsertWorker", "markWorkerGone", "createWorkflow", "cancelWorkflow", "spawnChildren", "parkTask",
] as const satisfies ReadonlyArray<keyof typeof LedgerServiceService>;

/** Default budget of an in-process call that gives none, as the kit's clients have, in ms. */
const DEFAULT_TIMEOUT_MS = 5000;

const tracer = trace.getTracer("taskmesh.coordinator.ledger");

/**
 * A ledger client whose {@link IN_PROCESS_METHODS} call `handlers` directly
 * and whose other methods go to `remote`. Each in-process call gets what a
 * server call would: an AbortSignal that fires at its deadline or when the
 * caller's signal does, a logger, and a span named like the RPC (so the
 * task's trace still shows the ledger write and its statements below it).
 * A handler's failure reaches the caller as the MeshError the service would
 * have answered.
 */
export function ledgerInProcess(remote: LedgerClient, handlers: ServiceHandlers<typeof LedgerServiceService>, log: Logger): LedgerClient {
  const local: Record<string, unknown> = {};
  for (const name of IN_PROCESS_METHODS) {
    const handler = handlers[name] as (request: unknown, ctx: CallContext) => Promise<unknown>;
    const path = LedgerServiceService[name].path;
    const callLog = log.child({ method: path });
    local[name] = async (request: unknown, options?: CallOptions): Promise<unknown> => {
      const deadline = deadlineFor(options, DEFAULT_TIMEOUT_MS);
      const controller = new AbortController();
      const signals = signalsOf(options);
      const onAbort = (event: Event): void => controller.abort((event.target as AbortSignal).reason);
      for (const s of signals) {
        if (s.aborted) controller.abort(s.reason);
        else s.addEventListener("abort", onAbort, { once: true });
      }
      const timer = deadline === undefined ? undefined : setTimeout(() => controller.abort(deadlineExceeded()), Math.max(0, deadline - Date.now()));
      const span = tracer.startSpan(path.slice(1), { kind: SpanKind.INTERNAL, attributes: { "rpc.system": "in-process", "rpc.method": name } });
      try {
        controller.signal.throwIfAborted();
        const ctx: CallContext = { method: path, metadata: options?.metadata ?? new Metadata(), signal: controller.signal, deadline, peer: "in-process", log: callLog };
        return await context.with(trace.setSpan(context.active(), span), () => handler(request, ctx));
      } catch (error) {
        const e = MeshError.from(error);
        span.recordException(e);
        if (e.code === Code.INTERNAL || e.code === Code.UNKNOWN) callLog.error({ err: e.cause ?? e, reason: e.reason }, "call failed");
        throw e;
      } finally {
        span.end();
        if (timer) clearTimeout(timer);
        for (const s of signals) s.removeEventListener("abort", onAbort);
      }
    };
  }
  return { ...remote, ...local } as LedgerClient;
}
