import type { Bus } from "./bus.js";
import type { KnownCapabilities } from "./capabilities.js";
import type { Dispatcher, LedgerClient } from "./dispatcher.js";
import type { LedgerBatches } from "./ledger-batches.js";

/** Timing of worker sessions. */
export interface SessionTiming {
  /** How often workers heartbeat, in ms. */
  readonly heartbeatMs: number;
  /** How long a worker has to send `register`, in ms. */
  readonly registerTimeoutMs: number;
}

/** What the WorkerService handlers need. */
export interface WorkerServiceDeps {
  readonly ledger: LedgerClient;
  /** Completions go through it, grouped under load. */
  readonly batches: LedgerBatches;
  readonly dispatcher: Dispatcher;
  readonly bus: Bus;
  readonly coordinatorId: string;
  readonly timing: SessionTiming;
  /** The capabilities a child task may have (as a submit's). */
  readonly capabilities: KnownCapabilities;
}
