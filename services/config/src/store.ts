import type pg from "pg";
import { Code, MeshError, notFound, query, withTransaction } from "@taskmesh/kit";
import { changeSql } from "./sql/changes.js";
import { entrySql, type ChangeRow, type EntryRow } from "./sql/entries.js";

/** The result of a write: the entry after it and the one before (absent on create). */
export interface PutResult {
  readonly entry: EntryRow;
  readonly previous: EntryRow | undefined;
}

/** The result of a delete: its revision and the entry that was removed. */
export interface DeleteResult {
  readonly revision: bigint;
  readonly previous: EntryRow;
}

/**
 * The config store on Postgres: every write takes the next global revision
 * (serializing writers), updates `entries`, appends to `changes` and
 * notifies every replica, all in one transaction.
 */
export class ConfigStore {
  constructor(private readonly pool: pg.Pool) {}

  /** The key's entry (undefined when missing) and the store revision of the read. */
  async get(key: string, signal?: AbortSignal): Promise<{ entry: EntryRow | undefined; revision: bigint }> {
    const { rows } = await query<EntryRow & { store_revision: string }>(this.pool, entrySql.get, [key], signal);
    const row = rows[0]!;
    return { entry: row.key === null ? undefined : row, revision: BigInt(row.store_revision) };
  }

  /** Writes a value; with `expected` set, only if the key's revision equals it (0: only if absent). */
  async put(key: string, value: unknown, expected: bigint | undefined, signal?: AbortSignal): Promise<PutResult> {
    return withTransaction(this.pool, async (client) => {
      const revision = await nextRevision(client);
      const previous = (await client.query<EntryRow>(entrySql.getForWrite, [key])).rows[0];
      checkExpected(key, expected, previous);
      const entry = (await client.query<EntryRow>(entrySql.upsert, [key, JSON.stringify(value), revision.toString()])).rows[0]!;
      await record(client, "put", entry);
      return { entry, previous };
    }, signal ? { signal } : {});
  }

  /** Deletes a key; NOT_FOUND when missing; with `expected`, only at that revision. */
  async delete(key: string, expected: bigint | undefined, signal?: AbortSignal): Promise<DeleteResult> {
    return withTransaction(this.pool, async (client) => {
      const revision = await nextRevision(client);
      const previous = (await client.query<EntryRow>(entrySql.getForWrite, [key])).rows[0];
      if (!previous) throw keyNotFound(key);
      checkExpected(key, expected, previous);
      await client.query(entrySql.delete, [key]);
      await record(client, "delete", { ...previous, revision: revision.toString() });
      return { revision, previous };
    }, signal ? { signal } : {});
  }

  /** A page of entries under `prefix` with keys after `after`, and the store revision, read consistently. */
  async list(prefix: string, after: string, limit: number, signal?: AbortSignal): Promise<{ entries: EntryRow[]; revision: bigint }> {
    return withTransaction(this.pool, async (client) => {
      const revision = BigInt((await client.query<{ revision: string }>(entrySql.currentRevision)).rows[0]!.revision);
      const entries = (await client.query<EntryRow>(entrySql.list, [prefix, after, limit])).rows;
      return { entries, revision };
    }, { isolation: "repeatable read", readOnly: true, ...(signal ? { signal } : {}) });
  }

  /** Every entry under `prefix` and the revision they are current at, read in one snapshot. */
  async snapshot(prefix: string, signal?: AbortSignal): Promise<{ entries: EntryRow[]; revision: bigint }> {
    return withTransaction(this.pool, async (client) => {
      const revision = BigInt((await client.query<{ revision: string }>(entrySql.currentRevision)).rows[0]!.revision);
      const entries: EntryRow[] = [];
      for (let after = ""; ;) {
        const page = (await client.query<EntryRow>(entrySql.list, [prefix, after, 1000])).rows;
        entries.push(...page);
        if (page.length < 1000) break;
        after = page[page.length - 1]!.key;
      }
      return { entries, revision };
    }, { isolation: "repeatable read", readOnly: true, ...(signal ? { signal } : {}) });
  }

  /** Up to `limit` changes under `prefix` after `revision`, oldest first. */
  async changesSince(revision: bigint, prefix: string, limit: number, signal?: AbortSignal): Promise<ChangeRow[]> {
    return (await query<ChangeRow>(this.pool, changeSql.since, [revision.toString(), prefix, limit], signal)).rows;
  }

  /** The current store revision. */
  async revision(signal?: AbortSignal): Promise<bigint> {
    return BigInt((await query<{ revision: string }>(this.pool, entrySql.currentRevision, [], signal)).rows[0]!.revision);
  }

  /** Up to `limit` changes of `key` before revision `before`, newest first. */
  async history(key: string, before: bigint, limit: number, signal?: AbortSignal): Promise<ChangeRow[]> {
    return (await query<ChangeRow>(this.pool, changeSql.history, [key, before.toString(), limit], signal)).rows;
  }
}

async function nextRevision(client: pg.PoolClient): Promise<bigint> {
  return BigInt((await client.query<{ revision: string }>(entrySql.nextRevision)).rows[0]!.revision);
}

async function record(client: pg.PoolClient, kind: "put" | "delete", entry: EntryRow): Promise<void> {
  await client.query(changeSql.record, [entry.revision, entry.key, kind, JSON.stringify(entry.value), entry.create_revision, entry.version]);
  await client.query(changeSql.notify, [entry.revision]);
}

function checkExpected(key: string, expected: bigint | undefined, current: EntryRow | undefined): void {
  if (expected === undefined) return;
  const actual = current ? BigInt(current.revision) : 0n;
  if (actual === expected) return;
  throw new MeshError({
    code: Code.ABORTED,
    reason: "RES_REVISION_MISMATCH",
    message: current
      ? `${key} is at revision ${actual}, not ${expected}`
      : `${key} does not exist, so it is not at revision ${expected}`,
    metadata: { key, expected_revision: expected.toString(), actual_revision: actual.toString() },
  });
}

/** NOT_FOUND (`RES_KEY_NOT_FOUND`) for a key. */
export function keyNotFound(key: string): MeshError {
  return notFound("RES_KEY_NOT_FOUND", `no key ${key}`, { key });
}
