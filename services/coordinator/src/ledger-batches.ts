import type { CompleteTaskRequest, CompleteTaskResponse, CreateTaskRequest, CreateTaskResponse } from "../../../gen/taskmesh/ledger/v1/ledger.js";
import type { Status } from "../../../gen/google/rpc/status.js";
import { fromRpcStatus, type MeshError } from "../../kit/src/index.js";
import { Batcher } from "./batcher.js";
import type { LedgerClient } from "./dispatcher.js";

/** The ledger writes every task makes, grouped into batch calls (one transaction each) under load. */
export interface LedgerBatches {
  /** CreateTask, through CreateTasks. */
  create(request: CreateTaskRequest): Promise<CreateTaskResponse>;
  /** CompleteTask, through CompleteTasks. */
  complete(request: CompleteTaskRequest): Promise<CompleteTaskResponse>;
}

type ItemResult<R> = { result?: { $case: "response"; value: R } | { $case: "error"; value: Status } | undefined };

function unpack<R>(results: ReadonlyArray<ItemResult<R>>): Array<R | MeshError> {
  return results.map((r) => (r.result?.$case === "response" ? r.result.value : fromRpcStatus(r.result?.value ?? { code: 13, message: "no answer for the item", details: [] })));
}

/**
 * Batchers over `ledger`, each call up to 500 items: at most four create calls at once, and two completion calls.
 * Completions are few per call when many calls run at once (one per worker result batch that happens to arrive), and
 * concurrent batch updates of neighbouring task rows cost Postgres more per row: with four in flight a 50,000-task
 * burst averaged 19 completions per call, with two about 45, and spent 0.58 instead of 0.63 ms of CPU per task
 * (docs/benchmarks.md). Two, not one, so that a slow commit does not hold every completion back.
 */
export function ledgerBatches(ledger: LedgerClient, inFlight: { creates: number; completes: number } = { creates: 4, completes: 2 }): LedgerBatches {
  const creates = new Batcher<CreateTaskRequest, CreateTaskResponse>(
    async (tasks) => unpack((await ledger.createTasks({ tasks }, { timeoutMs: 15_000 })).results), { maxBatch: 500, maxInFlight: inFlight.creates });
  const completes = new Batcher<CompleteTaskRequest, CompleteTaskResponse>(
    async (tasks) => unpack((await ledger.completeTasks({ tasks }, { timeoutMs: 15_000 })).results), { maxBatch: 500, maxInFlight: inFlight.completes });
  return { create: (r) => creates.submit(r), complete: (r) => completes.submit(r) };
}
