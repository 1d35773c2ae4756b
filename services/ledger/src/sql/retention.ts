import type pg from "pg";
import { pastCursor } from "./relay.js";

/** Statements of the retention pass (retention.ts). */
export const retentionSql = {
  /**
   * Deletes up to $2 tasks that finished more than $1 ms ago, oldest first,
   * skipping rows another transaction holds and tasks whose transitions the
   * outbox relay has not all published (their history rows are their
   * events); answers their ids. A workflow's tasks go only once all of
   * them finished (a waiting task reads its dependencies' outputs). The
   * `created_at` bound (implied by `finished_at`'s) lets the pass walk the
   * `tasks_created` index instead of the table.
   */
  removeTasks: {
    name: "ledger-retention-remove-tasks",
    text: `DELETE FROM ledger.tasks t
           WHERE t.id IN (
             SELECT id FROM ledger.tasks
             WHERE created_at < now() - make_interval(secs => $1::double precision / 1000)
               AND finished_at < now() - make_interval(secs => $1::double precision / 1000)
               AND NOT EXISTS (SELECT 1 FROM ledger.history h JOIN ledger.relay_cursor c ON c.relay = 'tasks'
                               WHERE h.task_id = ledger.tasks.id AND ${pastCursor("h", "c")})
               AND (workflow_id IS NULL OR NOT EXISTS (SELECT 1 FROM ledger.tasks u WHERE u.workflow_id = ledger.tasks.workflow_id AND u.finished_at IS NULL))
             ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED)
           RETURNING t.id, t.workflow_id`,
  },
  /** The history of tasks deleted earlier in the same transaction (migration 0010 allows it only then). */
  removeHistory: {
    name: "ledger-retention-remove-history",
    text: "DELETE FROM ledger.history WHERE task_id = ANY($1::uuid[])",
  },
  /** The dependency edges of tasks deleted earlier in the same transaction. */
  removeDeps: {
    name: "ledger-retention-remove-deps",
    text: "DELETE FROM ledger.task_deps WHERE task_id = ANY($1::uuid[]) OR depends_on = ANY($1::uuid[])",
  },
  /** Workflows among $1 with no task left. */
  removeWorkflows: {
    name: "ledger-retention-remove-workflows",
    text: "DELETE FROM ledger.workflows w WHERE w.id = ANY($1::uuid[]) AND NOT EXISTS (SELECT 1 FROM ledger.tasks t WHERE t.workflow_id = w.id)",
  },
} satisfies Record<string, pg.QueryConfig>;
