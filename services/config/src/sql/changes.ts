import type pg from "pg";

/** Statements on the change log. */
export const changeSql = {
  record: {
    name: "config-record-change",
    text: `INSERT INTO config.changes (revision, key, kind, value, create_revision, version, changed_at)
           VALUES ($1, $2, $3, $4, $5, $6, now())`,
  },
  /** Tells every replica's watch hub that revision $1 committed (delivered at commit). */
  notify: {
    name: "config-notify",
    text: "SELECT pg_notify('taskmesh_config', $1::text)",
  },
  /** Changes after a revision, in order, under a prefix. */
  since: {
    name: "config-changes-since",
    text: `SELECT revision, key, kind, value, create_revision, version, changed_at AS updated_at FROM config.changes
           WHERE revision > $1 AND key >= $2 AND key < $2 || '~'
           ORDER BY revision LIMIT $3`,
  },
  /** One key's changes before a revision, newest first. */
  history: {
    name: "config-history",
    text: `SELECT revision, key, kind, value, create_revision, version, changed_at AS updated_at FROM config.changes
           WHERE key = $1 AND revision < $2
           ORDER BY revision DESC LIMIT $3`,
  },
} satisfies Record<string, pg.QueryConfig>;
