import type pg from "pg";

/** A row of `config.entries`, or a change of `config.changes` shaped the same way. */
export interface EntryRow {
  key: string;
  value: unknown;
  create_revision: string;
  revision: string;
  version: string;
  updated_at: Date;
}

/** A row of `config.changes`. */
export interface ChangeRow extends EntryRow {
  kind: "put" | "delete";
}

/** Statements on current entries and the revision counter. */
export const entrySql = {
  /** Bumps the store revision, locking out other writers until commit. */
  nextRevision: {
    name: "config-next-revision",
    text: "UPDATE config.meta SET revision = revision + 1 RETURNING revision",
  },
  currentRevision: {
    name: "config-current-revision",
    text: "SELECT revision FROM config.meta",
  },
  get: {
    name: "config-get",
    text: `SELECT e.key, e.value, e.create_revision, e.revision, e.version, e.updated_at, m.revision AS store_revision
           FROM config.meta m LEFT JOIN config.entries e ON e.key = $1`,
  },
  /** The entry, for a writer that already holds the revision lock. */
  getForWrite: {
    name: "config-get-for-write",
    text: "SELECT key, value, create_revision, revision, version, updated_at FROM config.entries WHERE key = $1",
  },
  upsert: {
    name: "config-upsert",
    text: `INSERT INTO config.entries AS e (key, value, create_revision, revision, version, updated_at)
           VALUES ($1, $2, $3, $3, 1, now())
           ON CONFLICT (key) DO UPDATE
             SET value = EXCLUDED.value, revision = EXCLUDED.revision, version = e.version + 1, updated_at = now()
           RETURNING key, value, create_revision, revision, version, updated_at`,
  },
  delete: {
    name: "config-delete",
    text: "DELETE FROM config.entries WHERE key = $1",
  },
  /** A page of entries under a prefix, after a key. Keys use only ASCII below `~`, so `prefix || '~'` bounds the range. */
  list: {
    name: "config-list",
    text: `SELECT key, value, create_revision, revision, version, updated_at FROM config.entries
           WHERE key >= $1 AND key < $1 || '~' AND key > $2
           ORDER BY key LIMIT $3`,
  },
} satisfies Record<string, pg.QueryConfig>;
