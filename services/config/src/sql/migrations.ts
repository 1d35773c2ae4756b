import type { Migration } from "@taskmesh/kit";

/** The schema `config`: one global revision counter, current entries, and every change. */
export const migrations: readonly Migration[] = [
  {
    id: "0001_init",
    sql: `
      -- One row holding the store's revision. Writers bump it first, which
      -- serializes them: revisions commit in order, so "changes after N" never
      -- misses a change that commits later with a smaller revision.
      CREATE TABLE config.meta (
        singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
        revision bigint NOT NULL CHECK (revision >= 0)
      );
      INSERT INTO config.meta (revision) VALUES (0);

      CREATE TABLE config.entries (
        key text COLLATE "C" PRIMARY KEY
          CHECK (octet_length(key) <= 256 AND key ~ '^(/[A-Za-z0-9._-]+)+$'),
        value jsonb NOT NULL CHECK (octet_length(value::text) <= 65536 * 2),
        create_revision bigint NOT NULL CHECK (create_revision > 0),
        revision bigint NOT NULL CHECK (revision >= create_revision),
        version bigint NOT NULL CHECK (version >= 1),
        updated_at timestamptz NOT NULL DEFAULT now()
      );

      -- Append-only: one row per change, the source of History and Watch.
      -- A delete keeps the value, create revision and version the key had.
      CREATE TABLE config.changes (
        revision bigint PRIMARY KEY CHECK (revision > 0),
        key text COLLATE "C" NOT NULL,
        kind text NOT NULL CHECK (kind IN ('put', 'delete')),
        value jsonb NOT NULL,
        create_revision bigint NOT NULL,
        version bigint NOT NULL CHECK (version >= 1),
        changed_at timestamptz NOT NULL DEFAULT now()
      );
      CREATE INDEX changes_by_key ON config.changes (key, revision DESC);
    `,
  },
];
