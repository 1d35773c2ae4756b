import pg from "pg";
import type { Logger } from "pino";

/** Options of {@link createPool}. */
export interface PoolOptions {
  /** `postgres://` URL of the database. */
  readonly url: string;
  /** Shown in `pg_stat_activity`. */
  readonly applicationName: string;
  /** Most connections at once. @default 10 */
  readonly max?: number;
  /** Per-statement limit, in ms, enforced by Postgres. @default 30000 */
  readonly statementTimeoutMs?: number;
  /** Where idle-client errors are reported. */
  readonly logger: Logger;
}

/**
 * A pg pool with the kit's defaults. Errors of idle clients (the server
 * restarted, say) are logged instead of crashing the process; the pool
 * replaces the client on next use.
 */
export function createPool(options: PoolOptions): pg.Pool {
  const pool = new pg.Pool({
    connectionString: options.url,
    application_name: options.applicationName,
    max: options.max ?? 10,
    statement_timeout: options.statementTimeoutMs ?? 30_000,
    connectionTimeoutMillis: 5_000,
    idleTimeoutMillis: 30_000,
  });
  pool.on("error", (error) => options.logger.warn({ err: error }, "idle Postgres client failed"));
  return pool;
}

/** Options of {@link withTransaction}. */
export interface TransactionOptions {
  /** Cancels the running statement and rolls back when aborted. */
  readonly signal?: AbortSignal;
  /** Isolation level. @default read committed */
  readonly isolation?: "read committed" | "repeatable read" | "serializable";
  /** A read-only transaction. @default false */
  readonly readOnly?: boolean;
}

/**
 * Runs `work` in one transaction on a client of `pool`: COMMIT when it
 * resolves, ROLLBACK when it throws. When the signal aborts, the running
 * statement is cancelled on the server and the transaction rolled back.
 */
export async function withTransaction<T>(pool: pg.Pool, work: (client: pg.PoolClient) => Promise<T>, options: TransactionOptions = {}): Promise<T> {
  const { signal } = options;
  signal?.throwIfAborted();
  const client = await pool.connect();
  let cancelling: Promise<void> | undefined;
  const onAbort = (): void => void (cancelling = cancelBackend(pool, client));
  signal?.addEventListener("abort", onAbort, { once: true });
  let broken = false;
  try {
    await client.query(`BEGIN ISOLATION LEVEL ${(options.isolation ?? "read committed").toUpperCase()}${options.readOnly ? " READ ONLY" : ""}`);
    const result = await work(client);
    await client.query("COMMIT");
    return result;
  } catch (error) {
    try {
      await client.query("ROLLBACK");
    } catch {
      broken = true;
    }
    throw signal?.aborted ? signal.reason : error;
  } finally {
    signal?.removeEventListener("abort", onAbort);
    await cancelling;
    // A cancel may still be pending in the backend: a cancelled connection is never reused.
    client.release(broken || cancelling !== undefined);
  }
}

/** Runs one query, cancelling it on the server when `signal` aborts. */
export async function query<R extends pg.QueryResultRow>(pool: pg.Pool, text: pg.QueryConfig | string, values: unknown[] = [], signal?: AbortSignal): Promise<pg.QueryResult<R>> {
  signal?.throwIfAborted();
  if (!signal) return pool.query<R>(text as string, values);
  const client = await pool.connect();
  let cancelling: Promise<void> | undefined;
  const onAbort = (): void => void (cancelling = cancelBackend(pool, client));
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    return await client.query<R>(text as string, values);
  } catch (error) {
    throw signal.aborted ? signal.reason : error;
  } finally {
    signal.removeEventListener("abort", onAbort);
    await cancelling;
    // A cancel may still be pending in the backend: a cancelled connection is never reused.
    client.release(cancelling !== undefined);
  }
}

/**
 * Cancels the statement `client` runs, from a connection of its own: the
 * pool's may all be held by the very transactions being cancelled.
 */
async function cancelBackend(pool: pg.Pool, client: pg.PoolClient): Promise<void> {
  const pid = (client as unknown as { processID?: number }).processID;
  if (pid === undefined) return;
  const canceller = new pg.Client({ ...pool.options, statement_timeout: 5_000, connectionTimeoutMillis: 5_000 });
  canceller.on("error", () => undefined);
  try {
    await canceller.connect();
    await canceller.query("SELECT pg_cancel_backend($1)", [pid]);
  } catch {
    // The server may be going away; the statement timeout still bounds the query.
  } finally {
    await canceller.end().catch(() => undefined);
  }
}
