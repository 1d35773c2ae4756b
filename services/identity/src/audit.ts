import { TOPICS } from "@taskmesh/contracts";
import { context, propagation, trace } from "@opentelemetry/api";
import type { Metadata } from "@grpc/grpc-js";
import type pg from "pg";
import { AuditAction, AuditEvent, AuditOutcome, auditActionToJSON } from "@taskmesh/contracts/gen/taskmesh/identity/v1/identity";
import { uuidv7 } from "@taskmesh/kit";
import { auditSql, type AuditRow } from "./sql/audit.js";

/** The CloudEvents `source` of every audit event. */
export const AUDIT_SOURCE = "//taskmesh.dev/identity";

/** The Kafka topic of audit events. */
export const AUDIT_TOPIC = TOPICS.identity;

/** What one audit event says; never a secret or a token. */
export interface AuditRecord {
  readonly action: AuditAction;
  readonly outcome: AuditOutcome;
  /** Who did it (the caller's subject, `apikey:<id>` for token issue); empty when unknown. */
  readonly actor?: string;
  readonly subject?: string;
  readonly apiKeyId?: string;
  readonly familyId?: string;
  readonly kid?: string;
  /** For DENIED, the error reason; else the caller's reason, if any. */
  readonly reason?: string;
  readonly clientIp?: string;
  readonly details?: Record<string, unknown>;
}

/** Where a request came from, for the audit log: the client address and the trace. */
export interface RequestOrigin {
  readonly clientIp: string;
  readonly traceId: string;
  readonly traceparent: string;
}

/**
 * The client's address as the edge saw it: the last `x-forwarded-for`
 * entry, the one the edge appended (entries before it come from the client
 * and can be forged); empty for a call that did not come through the edge.
 */
export function clientIpOf(metadata: Metadata): string {
  const header = metadata.get("x-forwarded-for").map(String).join(",");
  const entries = header.split(",").map((e) => e.trim()).filter((e) => e !== "");
  return (entries.at(-1) ?? "").slice(0, 64);
}

/** The request's origin: its client address and the active trace. */
export function originOf(metadata: Metadata): RequestOrigin {
  const span = trace.getSpan(context.active())?.spanContext();
  const carrier: Record<string, string> = {};
  propagation.inject(context.active(), carrier);
  return { clientIp: clientIpOf(metadata), traceId: span?.traceId ?? "", traceparent: carrier.traceparent ?? "" };
}

/** The event type of an action, e.g. `taskmesh.identity.v1.token_issued`. */
export function auditType(action: AuditAction): string {
  return `taskmesh.identity.v1.${auditActionToJSON(action).replace(/^AUDIT_ACTION_/, "").toLowerCase()}`;
}

/** Appends an audit event in the caller's transaction (so it commits with the change it records, or not at all). */
export async function writeAudit(client: pg.ClientBase | pg.Pool, origin: RequestOrigin | undefined, record: AuditRecord): Promise<void> {
  await client.query(auditSql.insert, [
    uuidv7(), record.action, record.outcome, record.actor ?? "", record.subject ?? "", record.apiKeyId ?? "", record.familyId ?? "", record.kid ?? "",
    (record.reason ?? "").slice(0, 256), origin?.traceId ?? "", origin?.traceparent ?? "", record.clientIp ?? origin?.clientIp ?? "",
    record.details === undefined ? null : JSON.stringify(record.details),
  ]);
}

/** The AuditEvent of a stored audit row. */
export function toAuditEvent(row: AuditRow): AuditEvent {
  return {
    id: row.id, type: auditType(row.action), action: row.action, outcome: row.outcome, time: row.created_at,
    actor: row.actor, subject: row.subject, apiKeyId: row.api_key_id, familyId: row.family_id, kid: row.kid, reason: row.reason,
    traceId: row.trace_id, clientIp: row.client_ip, details: row.details ?? undefined,
  };
}

/** The proto3 JSON of an audit event, as published on Kafka. */
export function auditJson(row: AuditRow): string {
  return JSON.stringify(AuditEvent.toJSON(toAuditEvent(row)));
}

export { AuditAction, AuditOutcome };
