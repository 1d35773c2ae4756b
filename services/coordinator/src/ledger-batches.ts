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

/** Batchers over `ledger`: at most `maxInFlight` calls of each kind at once, each up to 500 items. */
export function ledgerBatches(ledger: LedgerClient, maxInFlight = 4): LedgerBatches {
  const creates = new Batcher<CreateTaskRequest, CreateTaskResponse>(
    async (tasks) => unpack((await ledger.createTasks({ tasks }, { timeoutMs: 15_000 })).results), { maxBatch: 500, maxInFlight });
  const completes = new Batcher<CompleteTaskRequest, CompleteTaskResponse>(
    async (tasks) => unpack((await ledger.completeTasks({ tasks }, { timeoutMs: 15_000 })).results), { maxBatch: 500, maxInFlight });
  return { create: (r) => creates.submit(r), complete: (r) => completes.submit(r) };
}
