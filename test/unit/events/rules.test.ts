import { describe, expect, it } from "vitest";
import type { Event, SubscribeRequest } from "@taskmesh/contracts/gen/taskmesh/events/v1/events";
import { TaskEvent } from "@taskmesh/contracts/gen/taskmesh/task/v1/task";
import { Code, MeshError } from "@taskmesh/kit";
import {
  PartitionTracker, checkEvent, checkSubscribe, contentHash, fromRecord, matchesAny, parseRoutes, routeOf, toRecord,
} from "../../../services/events/src/index.js";
import { tailLine, tailRequest } from "../../../packages/cli/src/commands/events.js";

const event = (overrides: Partial<Event> = {}): Event => ({
  id: "e-1", source: "//app", specversion: "", type: "shop.order.created", subject: "o-1", time: undefined,
  datacontenttype: "", dataschema: "", data: { a: 1 }, extensions: {}, ...overrides,
});

const subscribe = (overrides: Partial<SubscribeRequest> = {}): SubscribeRequest => ({
  topic: "t", consumerGroup: "", startPosition: undefined, types: [], maxInFlight: 0, ackDeadline: undefined, maxDeliveryAttempts: 0, ...overrides,
});

const thrown = (f: () => unknown): MeshError => {
  try {
    f();
  } catch (error) {
    return error as MeshError;
  }
  throw new Error("did not throw");
};

describe("events: type registry", () => {
  const configured = parseRoutes({ "shop.*": "shop", "shop.order.*": "orders", "shop.order.refunded": "refunds", "taskmesh.task.v1.*": "elsewhere" });

  it("routes by the most specific entry, and the built-in routes always apply", () => {
    expect(routeOf("shop.order.created", configured)).toBe("orders");
    expect(routeOf("shop.order.refunded", configured)).toBe("refunds");
    expect(routeOf("shop.cart.emptied", configured)).toBe("shop");
    expect(routeOf("taskmesh.task.v1.succeeded", configured)).toBe("taskmesh.tasks");
    expect(routeOf("taskmesh.identity.v1.key_rotated", {})).toBe("taskmesh.identity");
    expect(routeOf("other.thing", configured)).toBeUndefined();
    expect(routeOf("shopping.x", configured)).toBeUndefined();
  });

  it("refuses a registry that is not a map of type patterns to topics", () => {
    expect(() => parseRoutes(["a"])).toThrow();
    expect(() => parseRoutes({ "bad pattern": "t" })).toThrow(/pattern/);
    expect(() => parseRoutes({ "a.b": "bad topic" })).toThrow(/topic/);
  });

  it("filters types exactly or by prefix; no filter takes all", () => {
    expect(matchesAny([], "a.b")).toBe(true);
    expect(matchesAny(["a.*"], "a.b.c")).toBe(true);
    expect(matchesAny(["a.b"], "a.bc")).toBe(false);
    expect(matchesAny(["a.b.*"], "a.bc")).toBe(false);
  });
});

describe("events: event checks", () => {
  const now = new Date("2026-11-25T12:00:00Z");

  it("applies the defaults", () => {
    expect(checkEvent(event(), now)).toMatchObject({ specversion: "1.0", datacontenttype: "application/json", time: now });
  });

  it("reports every bad attribute at once", () => {
    const e = thrown(() => checkEvent(event({
      id: "x".repeat(257), source: "", datacontenttype: "text/plain", extensions: { id: "x", "toolongnameforanextension": "y", traceparent: "00-xyz" },
    }), now));
    expect([e.code, e.reason]).toEqual([Code.INVALID_ARGUMENT, "VAL_INVALID_EVENT"]);
    expect(e.violations.map((v) => v.field)).toEqual([
      "event.id", "event.source", "event.datacontenttype", "event.extensions[id]", "event.extensions[toolongnameforanextension]", "event.extensions[traceparent]",
    ]);
    expect(thrown(() => checkEvent(event({ extensions: Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`x${i}`, "v"])) }), now)).violations[0]!.field).toBe("event.extensions");
  });

  it("limits data to 1 MiB of JSON", () => {
    expect(() => checkEvent(event({ data: { s: "x".repeat(1024 * 1024 - 100) } }), now)).not.toThrow();
    expect(thrown(() => checkEvent(event({ data: { s: "x".repeat(1024 * 1024) } }), now)).reason).toBe("VAL_DATA_TOO_LARGE");
  });

  it("hashes content regardless of key order; any other difference changes the hash", () => {
    expect(contentHash(event({ data: { a: 1, b: { c: 2, d: 3 } } }))).toBe(contentHash(event({ data: { b: { d: 3, c: 2 }, a: 1 } })));
    expect(contentHash(event())).not.toBe(contentHash(event({ data: { a: 2 } })));
    expect(contentHash(event())).not.toBe(contentHash(event({ subject: "o-2" })));
    expect(contentHash(event())).not.toBe(contentHash(event({ extensions: { tenant: "x" } })));
  });
});

describe("events: records", () => {
  it("round-trips an event through its Kafka record in binary mode", () => {
    const e = checkEvent(event({ extensions: { traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", tenant: "acme", partitionkey: "p-9" } }), new Date("2026-11-25T12:00:00Z"));
    const record = toRecord(e);
    expect(record.key).toBe("p-9");
    expect(record.headers).toMatchObject({ ce_id: "e-1", ce_type: "shop.order.created", ce_tenant: "acme", traceparent: e.extensions.traceparent, ce_time: "2026-11-25T12:00:00.000Z" });
    expect(fromRecord({ headers: record.headers!, value: record.value as Buffer, timestamp: "0" })).toEqual(e);
  });

  it("reads the ledger's protobuf task events as their JSON", () => {
    const value = Buffer.from(TaskEvent.encode(TaskEvent.fromPartial({ id: "ev-1", type: "taskmesh.task.v1.created", subject: "task-1", sequence: 1n })).finish());
    const e = fromRecord({ headers: { ce_id: "ev-1", ce_type: "taskmesh.task.v1.created", "content-type": "application/protobuf" }, value, timestamp: "0" });
    expect(e.data).toMatchObject({ id: "ev-1", type: "taskmesh.task.v1.created", subject: "task-1" });
  });
});

describe("events: subscribe checks", () => {
  it("applies the defaults", () => {
    expect(checkSubscribe(subscribe())).toEqual({ topic: "t", group: undefined, start: { kind: "committed" }, types: [], maxInFlight: 100, ackDeadlineMs: 30_000, maxDeliveryAttempts: 5 });
  });

  it("reports every bad field with its reason", () => {
    const e = thrown(() => checkSubscribe(subscribe({
      topic: "", consumerGroup: "x".repeat(129), startPosition: { $case: "offset", value: { partitions: { 0: -1n } } },
      types: ["*"], maxInFlight: 1001, ackDeadline: { seconds: 0n, nanos: 5 }, maxDeliveryAttempts: 101,
    })));
    expect(e.reason).toBe("VAL_INVALID_TOPIC");
    expect(e.violations.map((v) => [v.field, v.reason])).toEqual([
      ["topic", "VAL_INVALID_TOPIC"], ["consumer_group", "VAL_INVALID_GROUP"], ["offset.partitions[0]", "VAL_INVALID_START"],
      ["types[0]", "VAL_INVALID_ARGUMENT"], ["max_in_flight", "VAL_INVALID_ARGUMENT"], ["ack_deadline", "VAL_INVALID_ARGUMENT"],
      ["max_delivery_attempts", "VAL_INVALID_ARGUMENT"],
    ]);
  });
});

describe("events: partition tracker", () => {
  it("commits only up to the oldest unsettled offset", () => {
    const t = new PartitionTracker();
    expect(t.commitOffset()).toBeUndefined();
    for (const o of [5n, 6n, 7n, 8n]) t.take(o);
    t.take(9n, true);
    expect(t.commitOffset()).toBe(5n);
    t.settle(6n);
    t.settle(7n);
    expect(t.commitOffset()).toBe(5n);
    t.settle(5n);
    expect(t.commitOffset()).toBe(8n);
    expect(t.settle(5n)).toBe(false);
    t.settle(8n);
    expect([t.commitOffset(), t.unsettled, t.taken(9n), t.taken(10n)]).toEqual([10n, 0, true, false]);
    t.committed = 10n;
    expect(t.dirty).toBe(false);
  });
});

describe("events: partition start", () => {
  it("a partition started at an offset skips what lies before it and commits that offset until something is delivered", () => {
    const t = new PartitionTracker();
    t.startFrom(40n);
    expect([t.taken(39n), t.taken(40n), t.commitOffset(), t.dirty]).toEqual([true, false, 40n, true]);
    t.take(40n);
    expect(t.commitOffset()).toBe(40n);
    t.settle(40n);
    expect(t.commitOffset()).toBe(41n);
    expect(() => t.startFrom(1n)).toThrow();
  });
});

describe("events tail (CLI)", () => {
  it("builds a private subscription from the options", () => {
    expect(tailRequest({})).toMatchObject({ topic: "taskmesh.tasks", consumerGroup: "", startPosition: { $case: "latest" }, types: [] });
    expect(tailRequest({ from: "2026-11-25T10:00:00Z", type: ["a.*"], topic: "x" })).toMatchObject({
      topic: "x", types: ["a.*"], startPosition: { $case: "timestamp", value: new Date("2026-11-25T10:00:00Z") },
    });
    expect(() => tailRequest({ from: "yesterday" })).toThrow(/--from/);
    expect(() => tailRequest({ type: ["a b"] })).toThrow(/--type/);
  });

  it("prints one line per event", () => {
    expect(tailLine({
      event: event({ data: { a: 1 } }), topic: "t", partition: 2, offset: 7n, key: "o-1", publishedAt: new Date("2026-11-25T12:00:00Z"), deliveryAttempt: 1, ackToken: "x",
    })).toBe('2026-11-25T12:00:00.000Z t/2@7 shop.order.created o-1 e-1 {"a":1}');
  });
});
