import type pg from "pg";
import type { LedgerServiceService } from "@taskmesh/contracts/gen/taskmesh/ledger/v1/ledger";
import type { ServiceHandlers } from "@taskmesh/kit";
import { ledgerHandlers } from "./handlers.js";
import { LedgerStore } from "./ledger-store.js";
import { QueueStore } from "./queue-store.js";
import { RowCache } from "./row-cache.js";
import { WorkerStore } from "./worker-store.js";

/** What {@link buildLedger} needs. */
export interface LedgerDeps {
  readonly pool: pg.Pool;
  /** Remember the rows this process leases, so their completions are one statement a batch (see RowCache). @default true */
  readonly rowCache?: boolean;
  /** Called after every write that may have made transitions (the outbox relay's nudge). */
  readonly afterWrite?: () => void;
}

/** The ledger's handlers and the stores behind them, as a process writing the ledger has them. */
export interface LedgerParts {
  readonly handlers: ServiceHandlers<typeof LedgerServiceService>;
  /** The queue's reads (the coordinator's dispatcher asks it what is due). */
  readonly queue: QueueStore;
  /** The leased rows remembered; undefined with `rowCache: false`. */
  readonly rows: RowCache | undefined;
}

/**
 * The ledger's wiring over one pool: its stores and its LedgerService
 * handlers. The one place they are put together, for the ledger service,
 * the coordinator (which writes the ledger in its own process) and the
 * tests alike.
 */
export function buildLedger(deps: LedgerDeps): LedgerParts {
  const rows = deps.rowCache === false ? undefined : new RowCache();
  const queue = new QueueStore(deps.pool, rows);
  return { rows, queue, handlers: ledgerHandlers(new LedgerStore(deps.pool, undefined, rows), queue, new WorkerStore(deps.pool), deps.afterWrite) };
}
