import type pg from "pg";
import type { StateName } from "./tasks.js";

/** A row of `ledger.workflows`. */
export interface WorkflowRow {
  id: string;
  name: string;
  failure_policy: "FAIL_FAST" | "CONTINUE";
  idempotency_key: string;
  request_hash: string;
  created_by: string;
  labels: Record<string, string>;
  trace_id: string;
  task_count: number;
  created_at: Date;
  cancelled_at: Date | null;
}

/** One task of a workflow, as its graph shows it. */
export interface NodeRow {
  id: string;
  workflow_step: string;
  capability: string;
  state: StateName;
  depends_on: string[] | null;
  finished_at: Date | null;
}

/** Statements on workflows (migration 0012). */
export const workflowSql = {
  /** A new workflow, unless its id or (created_by, idempotency_key) is taken: then no row. */
  insert: {
    name: "ledger-workflow-insert",
    text: `INSERT INTO ledger.workflows (id, name, failure_policy, idempotency_key, request_hash, created_by, labels, trace_id, task_count)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
           ON CONFLICT DO NOTHING RETURNING *`,
  },
  get: { name: "ledger-workflow-get", text: "SELECT * FROM ledger.workflows WHERE id = $1" },
  byIdempotencyKey: {
    name: "ledger-workflow-by-key",
    text: "SELECT * FROM ledger.workflows WHERE created_by = $1 AND idempotency_key = $2 AND idempotency_key <> ''",
  },
  /**
   * The tasks of a new workflow, one array per column: each WAITING with
   * its count of dependencies when it has any, else PENDING and due now;
   * at the transaction's time. $15–$18: the workflow's trace id,
   * traceparent, submitter and id.
   */
  insertTasks: {
    name: "ledger-workflow-insert-tasks",
    text: `INSERT INTO ledger.tasks (id, capability, state, input, max_attempts, trace_id, traceparent, idempotency_key, request_hash,
             priority, labels, timeout_ms, retry_initial_ms, retry_max_ms, retry_multiplier, created_by, created_at, updated_at, next_attempt_at, sequence,
             workflow_id, workflow_step, depends_on, waiting_on, workflow_position)
           SELECT v.id, v.capability, CASE WHEN v.waiting_on > 0 THEN 'WAITING' ELSE 'PENDING' END, v.input, v.max_attempts, $15, $16, '', v.request_hash,
             v.priority, v.labels, v.timeout_ms, v.retry_initial_ms, v.retry_max_ms, v.retry_multiplier, $17, now(), now(),
             CASE WHEN v.waiting_on > 0 THEN NULL ELSE now() END, 1, $18, v.step, d.depends_on, v.waiting_on, v.n
           FROM unnest($1::uuid[], $2::text[], $3::jsonb[], $4::int[], $5::text[], $6::int[], $7::jsonb[], $8::int[], $9::int[], $10::int[],
                       $11::float8[], $12::text[], $13::text[], $14::int[])
             WITH ORDINALITY AS v(id, capability, input, max_attempts, request_hash, priority, labels, timeout_ms, retry_initial_ms, retry_max_ms,
                  retry_multiplier, step, depends_on_text, waiting_on, n)
             CROSS JOIN LATERAL (SELECT CASE WHEN v.depends_on_text = '' THEN NULL ELSE string_to_array(v.depends_on_text, ',')::uuid[] END AS depends_on) d
           RETURNING id, state, created_at`,
  },
  /** The edges of a new workflow: task $2[i] depends on task $1[i]. */
  insertDeps: {
    name: "ledger-workflow-insert-deps",
    text: "INSERT INTO ledger.task_deps (depends_on, task_id) SELECT * FROM unnest($1::uuid[], $2::uuid[])",
  },
  /** A workflow's graph: its tasks in submit order. */
  nodes: {
    name: "ledger-workflow-nodes",
    text: `SELECT id, workflow_step, capability, state, depends_on, finished_at FROM ledger.tasks
           WHERE workflow_id = $1 ORDER BY workflow_position NULLS LAST, id`,
  },
  /** Marks a workflow cancelled (once); no row when it was already. */
  markCancelled: {
    name: "ledger-workflow-mark-cancelled",
    text: "UPDATE ledger.workflows SET cancelled_at = now() WHERE id = $1 AND cancelled_at IS NULL RETURNING *",
  },
  /** A workflow's unfinished tasks, locked: those the cancel ends (with their leases). */
  unfinished: {
    name: "ledger-workflow-unfinished",
    text: `SELECT id, state, attempts, lease_id, lease_worker_id, lease_acquired_at, lease_expires_at FROM ledger.tasks
           WHERE workflow_id = $1 AND state IN ('WAITING', 'PENDING', 'RUNNING') ORDER BY id FOR UPDATE`,
  },
  /** Cancels tasks $1 (those unfinished), reason $2, actor $3 (see ledger.cancel_workflow_tasks). */
  cancelTasks: { name: "ledger-workflow-cancel-tasks", text: "SELECT ledger.cancel_workflow_tasks($1::uuid[], $2, $3) AS n" },
  /** Per task of $1, the capabilities of its dependents that are PENDING and unleased now: what its completion made ready. */
  readyCapabilities: {
    name: "ledger-workflow-ready-capabilities",
    text: `SELECT DISTINCT d.depends_on, t.capability FROM ledger.task_deps d JOIN ledger.tasks t ON t.id = d.task_id
           WHERE d.depends_on = ANY($1::uuid[]) AND t.state = 'PENDING' AND t.lease_id IS NULL`,
  },
} satisfies Record<string, pg.QueryConfig>;
