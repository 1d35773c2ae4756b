import type pg from "pg";

/** An audit row as the relay reads it. */
export interface AuditRow {
  readonly seq: string;
  readonly id: string;
  readonly action: number;
  readonly outcome: number;
  readonly created_at: Date;
  readonly actor: string;
  readonly subject: string;
  readonly api_key_id: string;
  readonly family_id: string;
  readonly kid: string;
  readonly reason: string;
  readonly trace_id: string;
  readonly traceparent: string;
  readonly client_ip: string;
  readonly details: Record<string, unknown> | null;
}

/** Statements on the audit log (written in the transaction of each change; published by the audit relay). */
export const auditSql = {
  insert: {
    name: "identity-audit-insert",
    text: `INSERT INTO identity.audit (id, action, outcome, actor, subject, api_key_id, family_id, kid, reason, trace_id, traceparent, client_ip, details)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
  },
  /** Denied events of one action from one client address in the last $3 ms, and when the oldest of them leaves the window. */
  recentFailures: {
    name: "identity-audit-recent-failures",
    text: `SELECT count(*)::int AS failures,
                  GREATEST(0, EXTRACT(EPOCH FROM (min(created_at) + $3 * interval '1 millisecond' - clock_timestamp())) * 1000)::bigint AS retry_ms
           FROM identity.audit
           WHERE outcome = 2 AND action = $2 AND client_ip = $1 AND reason <> 'RATE_TOO_MANY_FAILURES' AND created_at > clock_timestamp() - $3 * interval '1 millisecond'`,
  },
} satisfies Record<string, pg.QueryConfig>;

/** The advisory lock (session level, two-key form) that makes one audit relay active across identity replicas. */
export const RELAY_LOCK = "hashtext('taskmesh:identity'), hashtext('audit-relay')";

/** Statements of the audit relay, all run on its dedicated (lock-holding) connection. */
export const relaySql = {
  tryLock: `SELECT pg_try_advisory_lock(${RELAY_LOCK}) AS locked`,
  unlock: `SELECT pg_advisory_unlock(${RELAY_LOCK}) AS unlocked`,
  unpublished: {
    name: "identity-relay-unpublished",
    text: `SELECT seq, id, action, outcome, created_at, actor, subject, api_key_id, family_id, kid, reason, trace_id, traceparent, client_ip, details
           FROM identity.audit WHERE published_at IS NULL ORDER BY seq LIMIT $1`,
  },
  markPublished: {
    name: "identity-relay-mark-published",
    text: `UPDATE identity.audit SET published_at = now() WHERE seq = ANY($1::bigint[]) AND published_at IS NULL`,
  },
} satisfies Record<string, string | pg.QueryConfig>;
