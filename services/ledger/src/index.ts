export { ledgerHandlers } from "./handlers.js";
export { isUuid, isUuidV7, uuidv7 } from "./ids.js";
export { migrations } from "./sql/migrations.js";
export { QueueStore, type Reclaimed } from "./queue-store.js";
export { LedgerStore, type LeaseCall, type TaskFilter } from "./store.js";
export { LEDGER_REASONS, backoffMs } from "./transitions.js";
export { MAX_PAYLOAD_BYTES, RETRY_DEFAULTS, parseCreate, type NewTask } from "./validation.js";
export { WorkerStore, type WorkerFilter, type WorkerUpsert } from "./worker-store.js";
export { EVENT_SOURCE } from "./writer.js";
