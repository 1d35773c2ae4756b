import { createHash } from "node:crypto";
import type { Event, SubscribeRequest } from "@taskmesh/contracts/gen/taskmesh/events/v1/events";
import { Violations, durationMs } from "@taskmesh/kit";
import { JSON_CONTENT_TYPE, RESERVED_ATTRIBUTES } from "./cloud-event.js";
import { isEventType, isTopicName, isTypePattern } from "./registry.js";

/** The largest `data`, as JSON bytes: 1 MiB. */
export const MAX_DATA_BYTES = 1024 * 1024;
/** The most extension attributes an event may carry. */
export const MAX_EXTENSIONS = 32;

const EXTENSION_NAME = /^[a-z0-9]{1,20}$/;
const TRACEPARENT = /^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/;
const GROUP = /^[A-Za-z0-9._-]{1,128}$/;
/** A URI-reference: printable, no spaces (RFC 3986 characters are not checked one by one). */
const URI_REFERENCE = /^[^\s\u0000-\u001f\u007f]{1,2048}$/;

/** Subscription limits and defaults, from the contract. */
export const SUBSCRIBE_LIMITS = {
  maxInFlight: { default: 100, max: 1000 },
  ackDeadlineMs: { default: 30_000, min: 1000, max: 600_000 },
  maxDeliveryAttempts: { default: 5, max: 100 },
} as const;

/**
 * Checks an event to publish (everything but whether its type is
 * registered) and returns it with defaults applied: specversion `1.0`,
 * datacontenttype `application/json`, time = `now` when unset. Throws
 * INVALID_ARGUMENT with every violation found.
 */
export function checkEvent(event: Event | undefined, now: Date, violations = new Violations()): Event {
  if (!event) {
    violations.add("event", "required", "VAL_INVALID_EVENT").check();
    throw new Error("unreachable");
  }
  const bad = (field: string, description: string) => violations.add(`event.${field}`, description, "VAL_INVALID_EVENT");
  if (event.id.length < 1 || event.id.length > 256) bad("id", "required, 1..256 characters");
  if (!URI_REFERENCE.test(event.source)) bad("source", "required: a URI-reference such as //taskmesh.dev/app, without spaces");
  if (event.specversion !== "" && event.specversion !== "1.0") bad("specversion", "only 1.0 (or empty)");
  if (event.type === "") bad("type", "required");
  else if (!isEventType(event.type)) bad("type", "expected a reverse-DNS style type such as taskmesh.task.v1.succeeded");
  if (event.subject.length > 1024) bad("subject", "at most 1024 characters");
  const contentType = event.datacontenttype.split(";")[0]!.trim().toLowerCase();
  if (event.datacontenttype !== "" && contentType !== JSON_CONTENT_TYPE) bad("datacontenttype", "only application/json");
  if (event.dataschema !== "" && !URI_REFERENCE.test(event.dataschema)) bad("dataschema", "expected a URI");
  if (event.time !== undefined && Number.isNaN(event.time.getTime())) bad("time", "not a valid time");
  const names = Object.keys(event.extensions);
  if (names.length > MAX_EXTENSIONS) bad("extensions", `at most ${MAX_EXTENSIONS}`);
  for (const name of names) {
    if (!EXTENSION_NAME.test(name)) bad(`extensions[${name}]`, "names are 1..20 characters of a-z 0-9");
    else if (RESERVED_ATTRIBUTES.has(name)) bad(`extensions[${name}]`, "is a core attribute, not an extension");
  }
  const traceparent = event.extensions.traceparent;
  if (traceparent !== undefined && !TRACEPARENT.test(traceparent)) bad("extensions[traceparent]", "expected a W3C traceparent (00-<trace id>-<span id>-<flags>)");
  const size = Buffer.byteLength(JSON.stringify(event.data ?? {}));
  if (size > MAX_DATA_BYTES) violations.add("event.data", `${size} bytes as JSON; at most ${MAX_DATA_BYTES}`, "VAL_DATA_TOO_LARGE");
  violations.check();
  return {
    ...event,
    specversion: "1.0",
    datacontenttype: JSON_CONTENT_TYPE,
    time: event.time ?? now,
    data: event.data ?? {},
  };
}

/** Canonical JSON: object keys sorted, so equal content hashes equally whatever the key order. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const o = value as Record<string, unknown>;
    return `{${Object.keys(o).sort().filter((k) => o[k] !== undefined).map((k) => `${JSON.stringify(k)}:${canonical(o[k])}`).join(",")}}`;
  }
  return JSON.stringify(value) ?? "null";
}

/**
 * The content hash of an event as the publisher sent it (before defaults,
 * so a repeat without `time` equals the first publish): what decides
 * whether a reused (source, id) is the same event.
 */
export function contentHash(event: Event): string {
  const normalized = {
    id: event.id, source: event.source, type: event.type, subject: event.subject,
    time: event.time?.toISOString() ?? "", dataschema: event.dataschema, data: event.data ?? {}, extensions: event.extensions,
  };
  return createHash("sha256").update(canonical(normalized)).digest("base64url");
}

/** Where a subscription starts, resolved from the request. */
export type StartPosition =
  | { readonly kind: "committed" }
  | { readonly kind: "latest" }
  | { readonly kind: "earliest" }
  | { readonly kind: "offsets"; readonly offsets: ReadonlyMap<number, bigint> }
  | { readonly kind: "timestamp"; readonly at: Date };

/** A checked Subscribe request with defaults applied. */
export interface SubscriptionSpec {
  readonly topic: string;
  /** The consumer group; undefined for a private one. */
  readonly group: string | undefined;
  readonly start: StartPosition;
  readonly types: readonly string[];
  readonly maxInFlight: number;
  readonly ackDeadlineMs: number;
  readonly maxDeliveryAttempts: number;
}

/** Checks a Subscribe request; INVALID_ARGUMENT with every violation found. */
export function checkSubscribe(request: SubscribeRequest): SubscriptionSpec {
  const v = new Violations();
  if (!isTopicName(request.topic)) v.add("topic", "required: a Kafka topic name (A-Z a-z 0-9 . _ -, at most 249)", "VAL_INVALID_TOPIC");
  if (request.consumerGroup !== "" && !GROUP.test(request.consumerGroup)) v.add("consumer_group", "1..128 characters of A-Z a-z 0-9 . _ - (or empty for a private group)", "VAL_INVALID_GROUP");
  let start: StartPosition = { kind: "committed" };
  const position = request.startPosition;
  if (position?.$case === "latest") start = { kind: "latest" };
  else if (position?.$case === "earliest") start = { kind: "earliest" };
  else if (position?.$case === "timestamp") {
    if (Number.isNaN(position.value.getTime())) v.add("timestamp", "not a valid time", "VAL_INVALID_START");
    start = { kind: "timestamp", at: position.value };
  } else if (position?.$case === "offset") {
    const offsets = new Map<number, bigint>();
    for (const [p, o] of Object.entries(position.value.partitions)) {
      const partition = Number(p);
      if (!Number.isInteger(partition) || partition < 0) v.add(`offset.partitions[${p}]`, "not a partition number", "VAL_INVALID_START");
      else if (o < 0n) v.add(`offset.partitions[${p}]`, "offsets are 0 or more", "VAL_INVALID_START");
      else offsets.set(partition, o);
    }
    if (Object.keys(position.value.partitions).length === 0) v.add("offset.partitions", "name at least one partition", "VAL_INVALID_START");
    start = { kind: "offsets", offsets };
  }
  request.types.forEach((t, i) => {
    if (!isTypePattern(t)) v.add(`types[${i}]`, "expected an event type or a prefix ending in .*");
  });
  const { maxInFlight: mif, ackDeadlineMs: ad, maxDeliveryAttempts: mda } = SUBSCRIBE_LIMITS;
  if (request.maxInFlight < 0 || request.maxInFlight > mif.max) v.add("max_in_flight", `1..${mif.max} (0 for ${mif.default})`);
  const deadline = durationMs(request.ackDeadline);
  if (deadline !== undefined && (deadline < ad.min || deadline > ad.max)) v.add("ack_deadline", "1s..10m (unset for 30s)");
  if (request.maxDeliveryAttempts < 0 || request.maxDeliveryAttempts > mda.max) v.add("max_delivery_attempts", `1..${mda.max} (0 for ${mda.default})`);
  v.check();
  return {
    topic: request.topic,
    group: request.consumerGroup === "" ? undefined : request.consumerGroup,
    start,
    types: [...request.types],
    maxInFlight: request.maxInFlight || mif.default,
    ackDeadlineMs: deadline ?? ad.default,
    maxDeliveryAttempts: request.maxDeliveryAttempts || mda.default,
  };
}
