import { SpanKind, SpanStatusCode, context, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider } from "@opentelemetry/sdk-trace";
import type { ConsumerRunConfig, KafkaMessage } from "kafkajs";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createLogger } from "@taskmesh/kit";
import { EventConsumer, MemoryDedupStore, type ConsumedEvent, type ConsumerLike } from "../../../packages/kit/src/events/index.js";

/** A consumer that records what the helper asks of it and lets the test hand it records. */
class FakeConsumer implements ConsumerLike {
  readonly commits: Array<{ topic: string; partition: number; offset: string }> = [];
  readonly subscribed: string[] = [];
  run_: ConsumerRunConfig | undefined;
  connected = false;
  async connect() {
    this.connected = true;
  }
  async subscribe({ topic }: { topic: string | RegExp }) {
    this.subscribed.push(String(topic));
  }
  async run(config?: ConsumerRunConfig) {
    this.run_ = config;
  }
  async commitOffsets(offsets: Array<{ topic: string; partition: number; offset: string }>) {
    this.commits.push(...offsets);
  }
  async disconnect() {
    this.connected = false;
  }
  /** Hands one record to the helper as kafkajs would. */
  deliver(topic: string, partition: number, message: KafkaMessage): Promise<void> {
    return this.run_!.eachMessage!({ topic, partition, message, heartbeat: async () => undefined, pause: () => () => undefined });
  }
}

const TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
const record = (offset: number, id: string | undefined, extra: Record<string, string> = {}): KafkaMessage => ({
  key: Buffer.from("k"), value: Buffer.from("{}"), timestamp: "0", attributes: 0, offset: String(offset), size: 0,
  headers: { ...(id ? { ce_id: id } : {}), ce_type: "test.thing.done", ce_source: "//test", traceparent: TRACEPARENT, ...extra },
}) as unknown as KafkaMessage;

describe("kit: EventConsumer (with a fake consumer and store)", () => {
  let consumer: FakeConsumer;
  let store: MemoryDedupStore;
  let exporter: InMemorySpanExporter;
  let seen: ConsumedEvent[];
  let fail: Set<string>;
  let helper: EventConsumer;

  beforeAll(() => {
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  });
  afterAll(() => {
    context.disable();
  });

  beforeEach(async () => {
    consumer = new FakeConsumer();
    store = new MemoryDedupStore();
    exporter = new InMemorySpanExporter();
    const provider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter })] });
    seen = [];
    fail = new Set();
    helper = new EventConsumer({
      consumer, store, groupId: "g1", topics: ["t1", "t2"], logger: createLogger({ level: "silent" }), tracer: provider.getTracer("test"),
      handler: async (event) => {
        if (fail.has(event.id)) throw new Error(`cannot handle ${event.id}`);
        seen.push(event);
      },
    });
    await helper.start();
  });

  it("subscribes, runs without auto-commit, and commits after the handler succeeded", async () => {
    expect([consumer.connected, consumer.subscribed, consumer.run_?.autoCommit]).toEqual([true, ["t1", "t2"], false]);
    await consumer.deliver("t1", 2, record(41, "e1"));
    expect(seen.map((e) => [e.id, e.type, e.source, e.topic, e.partition, e.offset])).toEqual([["e1", "test.thing.done", "//test", "t1", 2, "41"]]);
    expect(consumer.commits).toEqual([{ topic: "t1", partition: 2, offset: "42" }]);
    await helper.stop();
    expect([helper.state, consumer.connected]).toEqual(["stopped", false]);
  });

  it("hands each event id to the handler once, also when Kafka redelivers it (elsewhere too)", async () => {
    await consumer.deliver("t1", 0, record(1, "e1"));
    await consumer.deliver("t1", 0, record(1, "e1")); // the same record again
    await consumer.deliver("t2", 1, record(9, "e1")); // a re-sent copy at another position
    await consumer.deliver("t1", 0, record(2, "e2"));
    expect(seen.map((e) => e.id)).toEqual(["e1", "e2"]);
    expect(helper.counts).toEqual({ processed: 2, skipped: 2 });
    // Duplicates are committed past too.
    expect(consumer.commits.map((c) => `${c.topic}/${c.partition}@${c.offset}`)).toEqual(["t1/0@2", "t1/0@2", "t2/1@10", "t1/0@3"]);
  });

  it("a failing handler commits nothing and releases the id, so the redelivery is handled", async () => {
    fail.add("e1");
    await expect(consumer.deliver("t1", 0, record(5, "e1"))).rejects.toThrow("cannot handle e1");
    expect(consumer.commits).toEqual([]);
    fail.clear();
    await consumer.deliver("t1", 0, record(5, "e1"));
    expect(seen.map((e) => e.id)).toEqual(["e1"]);
    expect(consumer.commits).toEqual([{ topic: "t1", partition: 0, offset: "6" }]);
  });

  it("retries (never skips) an id another consumer is processing", async () => {
    await store.claim("taskmesh:consumed:g1:e1", 60_000);
    await expect(consumer.deliver("t1", 0, record(5, "e1"))).rejects.toThrow("being processed");
    expect([seen, consumer.commits]).toEqual([[], []]);
  });

  it("deduplicates records without ce_id by their position", async () => {
    await consumer.deliver("t1", 0, record(7, undefined));
    await consumer.deliver("t1", 0, record(7, undefined));
    expect(seen.map((e) => e.id)).toEqual(["t1/0@7"]);
  });

  it("runs the handler in a CONSUMER span that is a child of the record's traceparent", async () => {
    let active: string | undefined;
    const traced = new EventConsumer({
      consumer: new FakeConsumer(), store, groupId: "g2", topics: ["t1"], logger: createLogger({ level: "silent" }),
      tracer: new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter })] }).getTracer("test"),
      handler: async () => void (active = trace.getActiveSpan()?.spanContext().spanId),
    });
    await traced.handle({ topic: "t1", partition: 0, message: record(1, "e9") });
    fail.add("e8");
    await consumer.deliver("t1", 0, record(2, "e8")).catch(() => undefined);
    const [ok, failed] = exporter.getFinishedSpans();
    expect(ok!.kind).toBe(SpanKind.CONSUMER);
    expect(ok!.spanContext().traceId).toBe("0af7651916cd43dd8448eb211c80319c");
    expect(ok!.parentSpanContext?.spanId).toBe("b7ad6b7169203331");
    expect(ok!.attributes).toMatchObject({ "messaging.message.id": "e9", "messaging.consumer.group.name": "g2", "taskmesh.dedup": "claimed" });
    expect(active).toBe(ok!.spanContext().spanId);
    expect(failed!.status.code).toBe(SpanStatusCode.ERROR);
  });
});
