import { LeaderRelay, type LeaderRelaySettings, type LeaderRelayState, type RelayMessage } from "@taskmesh/kit/pg/leader-relay";
import { AUDIT_SOURCE, AUDIT_TOPIC, auditJson, auditType } from "./audit.js";
import { relaySql, type AuditRow } from "./sql/audit.js";

/** The relay's lifecycle. */
export type AuditRelayState = LeaderRelayState;

/** Options of an {@link AuditRelay}. */
export interface AuditRelayOptions extends LeaderRelaySettings {
  /** The Postgres database holding schema `identity` (the relay opens one dedicated connection to it). */
  readonly databaseUrl: string;
  /** The topic to publish to. @default "taskmesh.identity" */
  readonly topic?: string;
  /** Names the Postgres connection and the Kafka client id. @default "identity-audit-relay" */
  readonly name?: string;
}

/** The Kafka message of one audit row: key = subject, value = AuditEvent proto3 JSON, CloudEvents binary-mode headers. */
export function toAuditMessage(row: AuditRow): RelayMessage {
  const headers: Record<string, string> = {
    ce_specversion: "1.0",
    ce_id: row.id,
    ce_type: auditType(row.action),
    ce_source: AUDIT_SOURCE,
    ce_time: row.created_at.toISOString(),
    "content-type": "application/json",
  };
  if (row.traceparent) headers.traceparent = row.traceparent;
  return { key: row.subject, value: auditJson(row), headers };
}

/**
 * Publishes the audit log (`identity.audit`) to Kafka, as the ledger's
 * outbox relay does (see {@link LeaderRelay}): one relay is active across
 * replicas (the holder of the advisory lock `RELAY_LOCK` on its dedicated
 * connection); it reads unpublished rows in `seq` order, sends them with one
 * `send` on an idempotent producer, then marks them published. A crash
 * between the send and the mark re-sends those rows (at least once;
 * consumers deduplicate by `ce_id`); no row is ever skipped, since the relay
 * selects by `published_at IS NULL`, not by position.
 */
export class AuditRelay extends LeaderRelay<AuditRow> {
  constructor(options: AuditRelayOptions) {
    super({
      ...options,
      topic: options.topic ?? AUDIT_TOPIC,
      name: options.name ?? "identity-audit-relay",
      label: "audit",
      lock: { tryLock: relaySql.tryLock, unlock: relaySql.unlock },
      readBatch: async (client, limit) => (await client.query<AuditRow>({ ...relaySql.unpublished, values: [limit] })).rows,
      markPublished: async (client, rows) => void (await client.query({ ...relaySql.markPublished, values: [rows.map((r) => r.seq)] })),
      toMessage: toAuditMessage,
      describeBatch: (rows) => ({ lastSeq: rows.at(-1)!.seq }),
    });
  }
}
