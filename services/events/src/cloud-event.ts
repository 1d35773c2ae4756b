import type { IHeaders, KafkaMessage, Message } from "kafkajs";
import type { Event } from "@taskmesh/contracts/gen/taskmesh/events/v1/events";
import { TaskEvent } from "@taskmesh/contracts/gen/taskmesh/task/v1/task";

/** The CloudEvents attributes with a header of their own (`ce_<name>`), besides extensions. */
const CORE = ["id", "source", "specversion", "type", "subject", "time", "datacontenttype", "dataschema"] as const;

/** Extensions carried in plain W3C headers (not `ce_` ones): the trace context. */
const TRACE_HEADERS = ["traceparent", "tracestate"] as const;

/** Attribute names an extension may not take: the core attributes and `data`. */
export const RESERVED_ATTRIBUTES: ReadonlySet<string> = new Set([...CORE, "data", "data_base64"]);

/** The extension that overrides the partition key. */
export const PARTITION_KEY = "partitionkey";

/** The default `datacontenttype`. */
export const JSON_CONTENT_TYPE = "application/json";

/** A record's headers as text. */
export function headersText(headers: IHeaders | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers ?? {})) {
    if (v === undefined) continue;
    const first = Array.isArray(v) ? v[0] : v;
    if (first !== undefined) out[k] = Buffer.isBuffer(first) ? first.toString("utf8") : String(first);
  }
  return out;
}

/** The partition key of an event: extension `partitionkey`, else its subject, else none (spread over partitions). */
export function partitionKeyOf(event: Event): string | undefined {
  return event.extensions[PARTITION_KEY] || event.subject || undefined;
}

/**
 * The Kafka record of an event, in CloudEvents binary mode: key = partition
 * key, attributes in `ce_*` headers (the trace context in `traceparent` /
 * `tracestate`), value = `data` as JSON.
 */
export function toRecord(event: Event): Message {
  const headers: Record<string, string> = {};
  for (const name of CORE) {
    const value = name === "time" ? event.time?.toISOString() : event[name];
    if (value) headers[`ce_${name}`] = value;
  }
  for (const [name, value] of Object.entries(event.extensions)) {
    headers[(TRACE_HEADERS as readonly string[]).includes(name) ? name : `ce_${name}`] = value;
  }
  const key = partitionKeyOf(event);
  return { key: key ?? null, value: Buffer.from(JSON.stringify(event.data ?? {})), headers };
}

/**
 * The event a Kafka record carries. Records of other producers are read as
 * leniently as possible: a protobuf `TaskEvent` (the ledger's outbox) becomes
 * its proto3 JSON, a value that is not a JSON object is wrapped as
 * `{"value": ...}` (or `{"base64": ...}` when it is not text).
 */
export function fromRecord(message: Pick<KafkaMessage, "headers" | "value" | "timestamp">): Event {
  const h = headersText(message.headers);
  const extensions: Record<string, string> = {};
  for (const [name, value] of Object.entries(h)) {
    if (name.startsWith("ce_")) {
      const attr = name.slice(3);
      if (!(CORE as readonly string[]).includes(attr)) extensions[attr] = value;
    } else if ((TRACE_HEADERS as readonly string[]).includes(name)) extensions[name] = value;
  }
  const time = h.ce_time ? new Date(h.ce_time) : new Date(Number(message.timestamp));
  const contentType = h.ce_datacontenttype ?? h["content-type"] ?? JSON_CONTENT_TYPE;
  return {
    id: h.ce_id ?? "",
    source: h.ce_source ?? "",
    specversion: h.ce_specversion ?? "1.0",
    type: h.ce_type ?? "",
    subject: h.ce_subject ?? "",
    time: Number.isNaN(time.getTime()) ? undefined : time,
    // Data is always delivered as a JSON object, whatever the record's encoding.
    datacontenttype: JSON_CONTENT_TYPE,
    dataschema: h.ce_dataschema ?? "",
    data: dataOf(message.value, contentType),
    extensions,
  };
}

function dataOf(value: Buffer | null, contentType: string): Record<string, unknown> | undefined {
  if (value === null || value.length === 0) return undefined;
  if (contentType.startsWith("application/protobuf")) {
    try {
      return TaskEvent.toJSON(TaskEvent.decode(value)) as Record<string, unknown>;
    } catch {
      return { base64: value.toString("base64") };
    }
  }
  const text = value.toString("utf8");
  try {
    const parsed: unknown = JSON.parse(text);
    return typeof parsed === "object" && parsed !== null && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : { value: parsed };
  } catch {
    return Buffer.from(text, "utf8").equals(value) ? { value: text } : { base64: value.toString("base64") };
  }
}
