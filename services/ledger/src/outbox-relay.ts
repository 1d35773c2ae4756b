import { ROOT_CONTEXT, SpanKind, SpanStatusCode, context, propagation, trace, type Span } from "@opentelemetry/api";
import { suppressTracing } from "@opentelemetry/core";
import { Kafka, Partitioners, logLevel, type LogEntry, type Message, type Producer, type RetryOptions } from "kafkajs";
import pg from "pg";
import type { Logger } from "../../kit/src/index.js";
import { RELAY_CHANNEL, relaySql, type OutboxRow } from "./sql/relay.js";
import { EVENT_SOURCE } from "./writer.js";

/**
 * The CloudEvents `source` (`ce_source`) of every event the relay publishes:
 * the producer named by the contract (`TaskEvent.source`, `//taskmesh.dev/ledger`),
 * so the header and the payload agree.
 */
export const RELAY_SOURCE = EVENT_SOURCE;

/** The default Kafka topic of task events. */
export const TASKS_TOPIC = "taskmesh.tasks";

/** The relay's lifecycle. */
export type RelayState = "idle" | "running" | "stopping" | "stopped";

/** Options of an `OutboxRelay`. */
export interface OutboxRelayOptions {
  /** The Postgres database holding schema `ledger` (the relay opens one dedicated connection to it). */
  readonly databaseUrl: string;
  /** Kafka bootstrap brokers, `host:port`. */
  readonly brokers: readonly string[];
  /** The topic to publish to (default `taskmesh.tasks`). */
  readonly topic?: string;
  readonly logger: Logger;
  /** Names the Postgres connection (`application_name`) and the Kafka client id. */
  readonly name?: string;
  /** Rows per batch (one `producer.send`), default 500. */
  readonly batchSize?: number;
  /** How long to wait for a nudge before looking again when the outbox is empty, default 150 ms. */
  readonly pollIntervalMs?: number;
  /** How often a standby relay tries to take the lock, default 500 ms. */
  readonly lockRetryMs?: number;
  /** Back-off after a Postgres or Kafka error: from `initialMs` doubling up to `maxMs` (defaults 200 ms, 5 s). */
  readonly backoff?: { readonly initialMs: number; readonly maxMs: number };
  /** kafkajs client retries (its defaults when unset); a send that still fails is retried by the relay after its back-off. */
  readonly kafkaRetry?: RetryOptions;
  /** Test seam: runs after a batch is acknowledged by Kafka and before it is marked published. */
  readonly afterSend?: (rows: readonly OutboxRow[]) => void | Promise<void>;
}

const tracer = trace.getTracer("taskmesh.ledger.outbox-relay");

/**
 * The spans of one row's publish, in its task's trace (the row's
 * traceparent): `outbox relay` and its child `<topic> publish` (a Kafka
 * producer span). The message carries the producer span's traceparent, so
 * consumers continue from it; without tracing it keeps the row's.
 */
function publishSpans(row: OutboxRow, topic: string): { message: Message; end(error?: unknown): void } {
  const parent = row.traceparent ? propagation.extract(ROOT_CONTEXT, { traceparent: row.traceparent }) : ROOT_CONTEXT;
  const attributes = { "taskmesh.task_id": row.task_id, "taskmesh.outbox.id": String(row.id), "cloudevents.event_id": row.event_id, "cloudevents.event_type": row.type };
  const relay = tracer.startSpan("outbox relay", { kind: SpanKind.INTERNAL, attributes }, parent);
  const publish = tracer.startSpan(`${topic} publish`, {
    kind: SpanKind.PRODUCER,
    attributes: {
      ...attributes, "messaging.system": "kafka", "messaging.operation.type": "send", "messaging.operation.name": "send",
      "messaging.destination.name": topic, "messaging.message.id": row.event_id, "messaging.kafka.message.key": row.task_id,
    },
  }, trace.setSpan(parent, relay));
  const message = toMessage(row);
  const carrier: Record<string, string> = {};
  propagation.inject(trace.setSpan(ROOT_CONTEXT, publish), carrier);
  if (carrier.traceparent) message.headers = { ...message.headers, traceparent: carrier.traceparent };
  const finish = (span: Span, error?: unknown): void => {
    if (error !== undefined) span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) });
    span.end();
  };
  return { message, end: (error) => { finish(publish, error); finish(relay, error); } };
}

/** The Kafka message of one outbox row: key = task id, value = TaskEvent bytes, CloudEvents binary-mode headers. */
export function toMessage(row: OutboxRow): Message {
  const headers: Record<string, string> = {
    ce_specversion: "1.0",
    ce_id: row.event_id,
    ce_type: row.type,
    ce_source: RELAY_SOURCE,
    ce_subject: row.task_id,
    ce_time: row.created_at.toISOString(),
    "content-type": "application/protobuf",
    taskmesh_sequence: String(row.sequence),
  };
  if (row.traceparent) headers.traceparent = row.traceparent;
  return { key: row.task_id, value: row.payload, headers };
}

/**
 * Publishes the transactional outbox (`ledger.outbox`) to Kafka.
 *
 * One relay is active across ledger replicas: the one holding a session-level
 * advisory lock on its dedicated Postgres connection; the others try again
 * every `lockRetryMs` and take over when that connection ends. The active
 * relay reads unpublished rows in id order (at most `batchSize`), sends them
 * with one `producer.send` on an idempotent producer (acks -1, one request in
 * flight, key = task id), then marks them published. A task's rows are
 * written under its row lock, so their ids follow its sequence and its
 * events reach the task's partition in order.
 *
 * Delivery is at least once: a crash (or a lost connection) between the send
 * and the mark re-sends those rows. Consumers deduplicate by `ce_id` (the
 * event id); per task, the first copies of the events are in sequence order.
 */
export class OutboxRelay {
  #state: RelayState = "idle";
  readonly #options: OutboxRelayOptions;
  readonly #topic: string;
  readonly #kafka: Kafka;
  readonly #log: Logger;
  #producer: Producer | undefined;
  #client: pg.Client | undefined;
  #leader = false;
  #loop: Promise<void> | undefined;
  #wake: (() => void) | undefined;
  #published = 0;

  constructor(options: OutboxRelayOptions) {
    this.#options = options;
    this.#topic = options.topic ?? TASKS_TOPIC;
    this.#log = options.logger.child({ component: "outbox-relay", topic: this.#topic });
    const log = this.#log;
    this.#kafka = new Kafka({
      clientId: options.name ?? "ledger-outbox-relay",
      brokers: [...options.brokers],
      logLevel: logLevel.WARN,
      ...(options.kafkaRetry ? { retry: options.kafkaRetry } : {}),
      logCreator: () => ({ level, log: entry }: LogEntry) => {
        const { message, ...rest } = entry;
        if (level <= logLevel.ERROR) log.warn({ kafka: rest }, `kafka: ${message}`);
        else log.debug({ kafka: rest }, `kafka: ${message}`);
      },
    });
  }

  get state(): RelayState {
    return this.#state;
  }

  /** Whether this relay holds the lock (is the active one). */
  get isLeader(): boolean {
    return this.#leader;
  }

  /** Rows this relay has sent and marked published. */
  get published(): number {
    return this.#published;
  }

  /** Starts the loop in the background (standby until it takes the lock). */
  start(): void {
    if (this.#state !== "idle") throw new Error(`outbox relay is ${this.#state}`);
    this.#state = "running";
    this.#loop = this.#run();
  }

  /** Looks at the outbox now instead of at the next poll (a writer of this process just committed rows). */
  nudge(): void {
    this.#wake?.();
  }

  /** Finishes the batch in flight, releases the lock, disconnects. */
  async stop(): Promise<void> {
    if (this.#state === "idle") {
      this.#state = "stopped";
      return;
    }
    if (this.#state === "running") this.#state = "stopping";
    this.#wake?.();
    await this.#loop;
  }

  async #run(): Promise<void> {
    const { initialMs, maxMs } = this.#options.backoff ?? { initialMs: 200, maxMs: 5000 };
    let delay = initialMs;
    while (this.#state === "running") {
      try {
        if (!(await this.#lead())) continue;
        const more = await this.#publishBatch();
        delay = initialMs;
        if (!more) await this.#sleep(this.#options.pollIntervalMs ?? 150);
      } catch (error) {
        this.#log.warn({ err: error, retryInMs: delay }, "outbox relay failed; rows stay unpublished and are retried");
        await this.#reset();
        await this.#sleep(delay);
        delay = Math.min(maxMs, delay * 2);
      }
    }
    await this.#reset(true);
    this.#state = "stopped";
  }

  /** Makes sure this relay holds the lock and has a producer; false when it is a standby (after waiting). */
  async #lead(): Promise<boolean> {
    if (!this.#client) {
      const client = new pg.Client({
        connectionString: this.#options.databaseUrl,
        application_name: this.#options.name ?? "ledger-outbox-relay",
        connectionTimeoutMillis: 10_000,
        statement_timeout: 30_000,
        // Notices a dead server (and so a lost lock) on an idle connection.
        keepAlive: true,
      });
      client.on("error", (error) => {
        this.#log.warn({ err: error }, "outbox relay lost its Postgres connection");
        if (this.#client === client) this.#leader = false;
      });
      client.on("notification", (n) => {
        if (n.channel === RELAY_CHANNEL) this.#wake?.();
      });
      this.#client = client;
      await client.connect();
    }
    if (!this.#leader) {
      const { rows } = await this.#client.query<{ locked: boolean }>(relaySql.tryLock);
      if (!rows[0]!.locked) {
        await this.#sleep(this.#options.lockRetryMs ?? 500);
        return false;
      }
      this.#leader = true;
      await this.#client.query(relaySql.listen);
      this.#log.info("outbox relay is active (holds the lock)");
    }
    if (!this.#producer) {
      const producer = this.#kafka.producer({
        idempotent: true,
        maxInFlightRequests: 1,
        allowAutoTopicCreation: false,
        createPartitioner: Partitioners.DefaultPartitioner,
      });
      this.#producer = producer;
      await producer.connect();
    }
    return true;
  }

  /** Publishes one batch; true when the batch was full (more may be waiting). */
  async #publishBatch(): Promise<boolean> {
    const client = this.#client!;
    const batchSize = this.#options.batchSize ?? 500;
    const { rows } = await client.query<OutboxRow>({ ...relaySql.unpublished, values: [batchSize] });
    if (rows.length === 0) return false;
    const traced = rows.map((row) => publishSpans(row, this.#topic));
    try {
      // The relay's own producer spans stand for the send (per event, in each task's trace); kafkajs's would be one root per batch.
      await context.with(suppressTracing(context.active()), () => this.#producer!.send({ topic: this.#topic, acks: -1, messages: traced.map((t) => t.message) }));
      await this.#options.afterSend?.(rows);
      await client.query({ ...relaySql.markPublished, values: [rows.map((r) => r.id)] });
    } catch (error) {
      for (const t of traced) t.end(error);
      throw error;
    }
    for (const t of traced) t.end();
    this.#published += rows.length;
    this.#log.debug({ rows: rows.length, lastId: rows.at(-1)!.id }, "outbox batch published");
    return rows.length === batchSize;
  }

  /** Drops the connection (and with it the lock) and the producer; `graceful` unlocks first. */
  async #reset(graceful = false): Promise<void> {
    const client = this.#client;
    const producer = this.#producer;
    this.#client = undefined;
    this.#producer = undefined;
    const wasLeader = this.#leader;
    this.#leader = false;
    if (client) {
      if (graceful && wasLeader) await client.query(relaySql.unlock).catch(() => undefined);
      await client.end().catch(() => undefined);
    }
    if (producer) await producer.disconnect().catch((error: unknown) => this.#log.warn({ err: error }, "outbox relay producer disconnect failed"));
    if (wasLeader) this.#log.info("outbox relay released the lock");
  }

  /** Waits `ms`, or less when woken (nudge, notification or stop). */
  #sleep(ms: number): Promise<void> {
    if (this.#state !== "running") return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      const wake = () => done();
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.#wake = () => {
        this.#wake = undefined;
        wake();
      };
    });
  }
}
