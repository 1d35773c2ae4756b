import type { ConfigServiceService, Entry, Event, WatchResponse } from "@taskmesh/contracts/gen/taskmesh/config/v1/config";
import { EventType } from "@taskmesh/contracts/gen/taskmesh/config/v1/config";
import {
  decodePageToken, encodePageToken, invalidArgument, pageSize, requireScope, type CallContext, type FieldViolation, type Reason, type Send, type ServiceHandlers,
} from "@taskmesh/kit";
import { parseKey, parsePrefix, revisionViolation, valueViolation } from "./keys.js";
import { LiveQueue } from "./live-queue.js";
import type { ChangeRow, EntryRow } from "./sql/entries.js";
import { keyNotFound, type ConfigStore } from "./store.js";
import type { WatchHub } from "./watch-hub.js";

const MAX_REVISION = 9_223_372_036_854_775_807n;
/** Events per Watch message while replaying or sending a snapshot. */
const BATCH = 200;

/** Maps a row of `entries` or `changes` to the wire entry. */
export function toEntry(row: EntryRow): Entry {
  return {
    key: row.key,
    value: row.value,
    revision: BigInt(row.revision),
    createRevision: BigInt(row.create_revision),
    version: BigInt(row.version),
    updateTime: row.updated_at,
  };
}

function toEvent(row: ChangeRow): Event {
  return { type: row.kind === "put" ? EventType.EVENT_TYPE_PUT : EventType.EVENT_TYPE_DELETE, entry: toEntry(row) };
}

/** Throws INVALID_ARGUMENT for the violations found, with the first one's reason as the ErrorInfo reason. */
function throwIfAny(violations: (FieldViolation | undefined)[]): void {
  const found = violations.filter((v): v is FieldViolation => v !== undefined);
  if (found.length > 0) throw invalidArgument(found, (found[0]!.reason ?? "VAL_INVALID_ARGUMENT") as Reason);
}

/** The ConfigService handlers over a store and this replica's watch hub. */
export function configHandlers(store: ConfigStore, hub: WatchHub): ServiceHandlers<typeof ConfigServiceService> {
  return {
    async get(request, ctx) {
      requireScope(ctx.metadata, "config:read");
      const key = parseKey(request.key);
      const { entry, revision } = await store.get(key, ctx.signal);
      if (!entry) throw keyNotFound(key);
      return { entry: toEntry(entry), revision };
    },

    async put(request, ctx) {
      requireScope(ctx.metadata, "config:write");
      const key = parseKey(request.key);
      throwIfAny([valueViolation(request.value), revisionViolation(request.expectedRevision, "expected_revision")]);
      const { entry, previous } = await store.put(key, request.value, request.expectedRevision, ctx.signal);
      return { entry: toEntry(entry), previous: previous ? toEntry(previous) : undefined };
    },

    async delete(request, ctx) {
      requireScope(ctx.metadata, "config:write");
      const key = parseKey(request.key);
      throwIfAny([revisionViolation(request.expectedRevision, "expected_revision")]);
      const { revision, previous } = await store.delete(key, request.expectedRevision, ctx.signal);
      return { revision, previous: toEntry(previous) };
    },

    async list(request, ctx) {
      requireScope(ctx.metadata, "config:read");
      const prefix = parsePrefix(request.prefix);
      const limit = pageSize(request.pageSize);
      const after = decodePageToken(request.pageToken, `list:${prefix}`);
      const { entries, revision } = await store.list(prefix, typeof after === "string" ? after : "", limit + 1, ctx.signal);
      const page = entries.slice(0, limit);
      const more = entries.length > limit;
      return {
        entries: page.map(toEntry),
        nextPageToken: more ? encodePageToken(`list:${prefix}`, page[page.length - 1]!.key) : "",
        revision,
      };
    },

    async history(request, ctx) {
      requireScope(ctx.metadata, "config:read");
      const key = parseKey(request.key);
      const limit = pageSize(request.pageSize);
      const cursor = decodePageToken(request.pageToken, `history:${key}`);
      const before = typeof cursor === "string" && /^\d+$/.test(cursor) ? BigInt(cursor) : MAX_REVISION;
      const rows = await store.history(key, before, limit + 1, ctx.signal);
      if (rows.length === 0 && cursor === undefined) throw keyNotFound(key);
      const page = rows.slice(0, limit);
      return {
        events: page.map(toEvent),
        nextPageToken: rows.length > limit ? encodePageToken(`history:${key}`, page[page.length - 1]!.revision) : "",
      };
    },

    async watch(request, send, ctx) {
      requireScope(ctx.metadata, "config:read");
      const prefix = parsePrefix(request.prefix);
      throwIfAny([revisionViolation(request.afterRevision, "after_revision")]);
      const live = new LiveQueue(prefix);
      const unsubscribe = hub.subscribe(live.push); // before reading, so nothing committed after the read is missed
      try {
        let last = request.afterRevision ?? (await sendSnapshot(store, prefix, send, ctx));
        let replay = true;
        for (;;) {
          if (replay) {
            last = await replayChanges(store, prefix, last, send, ctx);
            replay = false;
          }
          const batch = await live.next(ctx.signal);
          if ("overflowed" in batch) {
            ctx.log.info({ prefix }, "watcher fell behind; re-reading the change log");
            replay = true;
            continue;
          }
          const fresh = batch.changes.filter((c) => BigInt(c.revision) > last);
          if (fresh.length === 0) continue;
          last = BigInt(fresh[fresh.length - 1]!.revision);
          await send({ events: fresh.map(toEvent), revision: last, snapshotComplete: false });
        }
      } finally {
        unsubscribe();
      }
    },
  };
}

/** Sends the current entries under `prefix` as PUT events, then the snapshot-complete mark; returns its revision. */
async function sendSnapshot(store: ConfigStore, prefix: string, send: Send<WatchResponse>, ctx: CallContext): Promise<bigint> {
  const { entries, revision } = await store.snapshot(prefix, ctx.signal);
  for (let i = 0; i < entries.length; i += BATCH) {
    const events = entries.slice(i, i + BATCH).map((row) => ({ type: EventType.EVENT_TYPE_PUT, entry: toEntry(row) }));
    await send({ events, revision, snapshotComplete: false });
  }
  await send({ events: [], revision, snapshotComplete: true });
  return revision;
}

/** Sends every logged change under `prefix` after `after`; returns the last revision sent (or `after`). */
async function replayChanges(store: ConfigStore, prefix: string, after: bigint, send: Send<WatchResponse>, ctx: CallContext): Promise<bigint> {
  let last = after;
  for (;;) {
    const rows = await store.changesSince(last, prefix, BATCH, ctx.signal);
    if (rows.length === 0) return last;
    last = BigInt(rows[rows.length - 1]!.revision);
    await send({ events: rows.map(toEvent), revision: last, snapshotComplete: false });
    if (rows.length < BATCH) return last;
  }
}
