import type pg from "pg";
import { LedgerServiceService } from "@taskmesh/contracts/gen/taskmesh/ledger/v1/ledger";
import { MeshServer, migrate, untilReady, type BuiltService, type Logger, type ServiceHandlers } from "@taskmesh/kit";
import { ledgerHandlers } from "./handlers.js";
import { LedgerStore } from "./ledger-store.js";
import type { OutboxRelay } from "./outbox-relay.js";
import { QueueStore } from "./queue-store.js";
import type { Retention } from "./retention.js";
import { RowCache } from "./row-cache.js";
import { migrations } from "./sql/migrations.js";
import { WorkerStore } from "./worker-store.js";
import { WorkflowStore } from "./workflow-store.js";

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
  return { rows, queue, handlers: ledgerHandlers(new LedgerStore(deps.pool, undefined, rows), queue, new WorkerStore(deps.pool), new WorkflowStore(deps.pool), deps.afterWrite) };
}

/** What {@link buildLedgerService} needs: made from the environment by main.ts, or by a test. */
export interface LedgerServiceDeps {
  /** The server's name (logs, health). */
  readonly name: string;
  readonly logger: Logger;
  /** The pool over schema `ledger`'s database; the service ends it when it shuts down. */
  readonly pool: pg.Pool;
  readonly shutdownGraceMs: number;
  /** @default true (see {@link LedgerDeps}) */
  readonly rowCache?: boolean;
  /** Publishes the outbox to Kafka; without it, outbox rows stay unpublished. The service starts and stops it. */
  readonly relay?: OutboxRelay;
  /** Deletes finished tasks past their retention; the service starts and stops it. */
  readonly retention?: Retention;
}

/** The ledger service, built: its parts beside the server. */
export interface LedgerService extends BuiltService, LedgerParts {}

/**
 * The ledger service's wiring, the one place it is put together: for
 * main.ts and the tests alike (the coordinator, which writes the ledger in
 * its own process, takes {@link buildLedger}'s parts only). Ready once its
 * migrations ran; then the relay and the retention start.
 */
export function buildLedgerService(deps: LedgerServiceDeps): LedgerService {
  const { pool, logger, relay, retention } = deps;
  const parts = buildLedger({ pool, ...(deps.rowCache !== undefined ? { rowCache: deps.rowCache } : {}), ...(relay ? { afterWrite: () => relay.nudge() } : {}) });
  // Closers run in reverse order: the relay (batch in flight, lock, producer) and the retention stop before the pool ends.
  const server = new MeshServer({ name: deps.name, logger, shutdownGraceMs: deps.shutdownGraceMs })
    .addService(LedgerServiceService, parts.handlers)
    .onClose("postgres pool", () => pool.end());
  if (retention) server.onClose("retention", () => retention.stop());
  if (relay) server.onClose("outbox relay", () => relay.stop());
  return {
    ...parts, server,
    async ready(signal) {
      await untilReady("postgres (migrations)", () => migrate(pool, "ledger", migrations, logger), signal, logger);
      relay?.start();
      retention?.start();
    },
  };
}
