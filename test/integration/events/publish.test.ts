import { Metadata } from "@grpc/grpc-js";
import { SpanKind } from "@opentelemetry/api";
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider } from "@opentelemetry/sdk-trace";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Event } from "@taskmesh/contracts/gen/taskmesh/events/v1/events";
import { Code, MeshError } from "@taskmesh/kit";
import { Subscriber, startEvents, waitFor, type EventsHarness } from "./support.js";

const event = (overrides: Partial<Event> = {}): Event => ({
  id: "e-1", source: "//test/publish", specversion: "", type: "test.publish.created", subject: "order-7", time: undefined,
  datacontenttype: "", dataschema: "", data: { amount: 12, items: ["a", "b"] }, extensions: {}, ...overrides,
});

describe("events: Publish on real Kafka and Redis", () => {
  let h: EventsHarness;
  let topic: string;
  const spans = new InMemorySpanExporter();

  beforeAll(async () => {
    h = await startEvents("events-pub", new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter: spans })] }).getTracer("test"));
    topic = await h.topic("publish", 3);
    h.routes["test.publish.*"] = topic;
  });

  afterAll(async () => {
    await h?.stop();
  }, 30_000);

  it("appends the event in CloudEvents binary mode and returns where it landed; its delivery's span links to its traceparent", async () => {
    const traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    const r = await h.client.publish({ event: event({ id: "landed-1", extensions: { traceparent, tenant: "acme" } }) });
    expect(r).toMatchObject({ topic, duplicate: false, offset: expect.any(BigInt) });
    expect(r.event).toMatchObject({ specversion: "1.0", datacontenttype: "application/json", time: expect.any(Date) });
    const sub = new Subscriber(h.client, { topic, startPosition: { $case: "offset", value: { partitions: { [r.partition]: r.offset } } } });
    await waitFor("the published event", () => sub.deliveries.length >= 1);
    await sub.ack([sub.deliveries[0]!.ackToken]);
    await sub.stop();
    const span = spans.getFinishedSpans().find((s) => s.attributes["messaging.message.id"] === "landed-1")!;
    expect(span.kind).toBe(SpanKind.CONSUMER);
    expect(span.links.map((l) => [l.context.traceId, l.context.spanId])).toEqual([["0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"]]);
    expect(span.attributes).toMatchObject({ "messaging.destination.name": topic, "messaging.kafka.offset": Number(r.offset), "taskmesh.delivery_attempt": 1 });
    const d = sub.deliveries[0]!;
    expect([d.partition, d.offset, d.key]).toEqual([r.partition, r.offset, "order-7"]);
    expect(d.event).toEqual({ ...r.event, extensions: { traceparent, tenant: "acme" } });
  });

  it("is idempotent by (source, id): the same event again returns the first position; other content is refused", async () => {
    const first = await h.client.publish({ event: event({ id: "dup-1" }) });
    expect(first.duplicate).toBe(false);
    // Same content with the data keys in another order.
    const again = await h.client.publish({ event: event({ id: "dup-1", data: { items: ["a", "b"], amount: 12 } }) });
    expect(again).toEqual({ ...first, duplicate: true });
    const ends = await h.admin.fetchTopicOffsets(topic);
    expect(ends.find((e) => e.partition === first.partition)!.high).toBe(String(first.offset + 1n));
    // The same id from another source is another event.
    const other = await h.client.publish({ event: event({ id: "dup-1", source: "//test/other" }) });
    expect(other.duplicate).toBe(false);
    await expect(h.client.publish({ event: event({ id: "dup-1", data: { amount: 13 } }) }))
      .rejects.toMatchObject({ code: Code.ALREADY_EXISTS, reason: "RES_EVENT_ID_REUSED" });
    // Concurrent repeats: one lands, the others are duplicates of it.
    const racing = await Promise.all(Array.from({ length: 8 }, () => h.client.publish({ event: event({ id: "race-1" }) })));
    expect(racing.filter((r) => !r.duplicate)).toHaveLength(1);
    expect(new Set(racing.map((r) => `${r.partition}@${r.offset}`)).size).toBe(1);
  });

  it("refuses unknown types and malformed events with field violations", async () => {
    const unknown = await h.client.publish({ event: event({ type: "test.nobody.registered" }) }).catch((e: unknown) => e);
    expect(unknown).toBeInstanceOf(MeshError);
    expect(unknown).toMatchObject({ code: Code.INVALID_ARGUMENT, reason: "VAL_UNKNOWN_EVENT_TYPE" });
    expect((unknown as MeshError).violations).toEqual([expect.objectContaining({ field: "event.type", reason: "VAL_UNKNOWN_EVENT_TYPE" })]);

    const bad = await h.client.publish({ event: event({ id: "", source: "has space", specversion: "0.3", extensions: { "Bad-Name": "x", traceparent: "nope" } }) }).catch((e: unknown) => e) as MeshError;
    expect([bad.code, bad.reason]).toEqual([Code.INVALID_ARGUMENT, "VAL_INVALID_EVENT"]);
    expect(bad.violations.map((v) => v.field)).toEqual(["event.id", "event.source", "event.specversion", "event.extensions[Bad-Name]", "event.extensions[traceparent]"]);

    const big = await h.client.publish({ event: event({ id: "big", data: { blob: "x".repeat(1024 * 1024) } }) }).catch((e: unknown) => e);
    expect(big).toMatchObject({ code: Code.INVALID_ARGUMENT, reason: "VAL_DATA_TOO_LARGE" });
    await expect(h.client.publish({ event: undefined })).rejects.toMatchObject({ code: Code.INVALID_ARGUMENT, reason: "VAL_INVALID_EVENT" });
  });

  it("routes the built-in task and identity types, and needs the events:write scope", async () => {
    const task = await h.client.publish({ event: event({ id: `t-${h.prefix}`, type: "taskmesh.task.v1.note" }) });
    expect(task.topic).toBe("taskmesh.tasks");
    const identity = await h.client.publish({ event: event({ id: `i-${h.prefix}`, type: "taskmesh.identity.v1.note" }) });
    expect(identity.topic).toBe("taskmesh.identity");
    const metadata = new Metadata();
    metadata.set("x-jwt-payload", Buffer.from(JSON.stringify({ sub: "reader", scope: "events:read" })).toString("base64url"));
    await expect(h.client.publish({ event: event({ id: "scoped" }) }, { metadata })).rejects.toMatchObject({ code: Code.PERMISSION_DENIED, reason: "AUTH_MISSING_SCOPE" });
    await expect(h.client.redrive({ ids: ["0-1"], topic: "", consumerGroup: "" }, { metadata })).rejects.toMatchObject({ code: Code.PERMISSION_DENIED, reason: "AUTH_MISSING_SCOPE" });
  });
});
