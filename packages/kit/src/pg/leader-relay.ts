import { context } from "@opentelemetry/api";
import { suppressTracing } from "@opentelemetry/core";
import { Producer, compatibilityPartitioner, stringSerializer } from "@platformatic/kafka";
import pg from "pg";
import type { Logger } from "../log.js";

/** A relay's lifecycle: `idle` → `running` → `stopping` → `stopped` (or `idle` → `stopped`). */
export type LeaderRelayState = "idle" | "running" | "stopping" | "stopped";

/** The settings a service's relay passes through unchanged; every relay has them. */
export interface LeaderRelaySettings {
  /** The Postgres database holding the rows (the relay opens one dedicated connection to it). */
  readonly databaseUrl: string;
  /** Kafka bootstrap brokers, `host:port`. */
  readonly brokers: readonly string[];
  readonly logger: Logger;
  /** Rows per batch (one `producer.send`). @default 500 */
  readonly batchSize?: number;
  /** How long to wait for a nudge before looking again when nothing is unpublished, in ms. @default 200 */
  readonly pollIntervalMs?: number;
  /** How often a standby relay tries to take the lock, in ms. @default 500 */
  readonly lockRetryMs?: number;
  /** Back-off after a Postgres or Kafka error: from `initialMs` doubling up to `maxMs`. @default { initialMs: 200, maxMs: 5000 } */
  readonly backoff?: { readonly initialMs: number; readonly maxMs: number };
  /**
   * The Kafka client's own retries of a failed request (3, 1000 ms apart,
   * when unset); a send that still fails is retried by the relay after its
   * back-off.
   */
  readonly kafkaRetry?: { readonly retries: number; readonly delayMs: number };
}

/** A Kafka message as a relay sends it: key (the partitioning key), value, headers. */
export interface RelayMessage {
  readonly key?: string;
  readonly value: Buffer | string;
  headers?: Record<string, string>;
}

/** The relay's producer: string keys and headers, values as given (bytes, or a string as UTF-8). */
type RelayProducer = Producer<string, Buffer | string, string, string>;

/** A value's bytes: a Buffer as it is, a string as UTF-8. */
function valueBytes(value?: Buffer | string): Buffer | undefined {
  return value === undefined || Buffer.isBuffer(value) ? value : Buffer.from(value, "utf8");
}

/** One row on its way to Kafka: the message to send, and what to call once the batch is marked published or has failed. */
export interface RelayedMessage {
  readonly message: RelayMessage;
  end(error?: unknown): void;
}

/** Options of a {@link LeaderRelay}: the settings, and what the relay publishes (its table, lock, topic and messages). */
export interface LeaderRelayOptions<Row> extends LeaderRelaySettings {
  /** The topic to publish to. */
  readonly topic: string;
  /** Names the Postgres connection (`application_name`) and the Kafka client id. */
  readonly name: string;
  /** Names the relay in its log lines (`<label> relay is active …`) and log component (`<label>-relay`), e.g. `outbox`. */
  readonly label: string;
  /** The session-level advisory lock that makes one relay active: statements returning `locked` and releasing it. */
  readonly lock: { readonly tryLock: string; readonly unlock: string };
  /** A channel whose notifications wake the active relay, and the statement that listens to it (run once the lock is held). */
  readonly listen?: { readonly channel: string; readonly statement: string };
  /** Reads unpublished rows in publish order, on the relay's connection: `limit` of them or more when more are waiting, fewer when not. */
  readonly readBatch: (client: pg.ClientBase, limit: number) => Promise<readonly Row[]>;
  /** Marks rows published (only once Kafka acknowledged them), on the relay's connection. */
  readonly markPublished: (client: pg.ClientBase, rows: readonly Row[]) => Promise<void>;
  /** The Kafka message of one row. */
  readonly toMessage: (row: Row) => RelayMessage;
  /**
   * Traces one row's publish: returns its message (carrying the relay's own
   * producer span) and ends the spans. When set, the send runs with tracing
   * suppressed, so these spans, not the Kafka client's, stand for it.
   */
  readonly trace?: (row: Row, topic: string) => RelayedMessage;
  /** What the debug line of a published batch says of it besides its size (its last position, say). */
  readonly describeBatch?: (rows: readonly Row[]) => Record<string, unknown>;
  /** Test seam: runs after a batch is acknowledged by Kafka and before it is marked published. */
  readonly afterSend?: (rows: readonly Row[]) => void | Promise<void>;
}

/** The options with every default filled in. */
type LeaderRelayConfig<Row> = Readonly<LeaderRelayOptions<Row> & Required<Pick<LeaderRelaySettings, "batchSize" | "pollIntervalMs" | "lockRetryMs" | "backoff">>>;

function leaderRelayConfig<Row>(options: LeaderRelayOptions<Row>): LeaderRelayConfig<Row> {
  return Object.freeze({
    ...options,
    batchSize: options.batchSize ?? 500,
    pollIntervalMs: options.pollIntervalMs ?? 200,
    lockRetryMs: options.lockRetryMs ?? 500,
    backoff: options.backoff ?? { initialMs: 200, maxMs: 5000 },
  });
}

/**
 * Publishes the unpublished rows of a table to Kafka from one active relay
 * across replicas: the one holding a session-level advisory lock on its
 * dedicated Postgres connection; the others try again every `lockRetryMs`
 * and take over when that connection ends. The active relay reads a batch,
 * sends it with one `producer.send` on an idempotent producer (acks -1, one
 * request in flight), then marks it published, and looks again at once
 * after a full batch, else after a nudge, a notification or `pollIntervalMs`.
 *
 * Delivery is at least once: a crash (or a lost connection) between the send
 * and the mark re-sends those rows; consumers deduplicate. A Postgres or
 * Kafka error drops the connection (and the lock) and the producer, and the
 * relay starts over after its back-off.
 */
export class LeaderRelay<Row> {
  #state: LeaderRelayState = "idle";
  readonly #config: LeaderRelayConfig<Row>;
  readonly #log: Logger;
  #producer: RelayProducer | undefined;
  #client: pg.Client | undefined;
  #leader = false;
  #loop: Promise<void> | undefined;
  #wake: (() => void) | undefined;
  #published = 0;

  constructor(options: LeaderRelayOptions<Row>) {
    this.#config = leaderRelayConfig(options);
    this.#log = options.logger.child({ component: `${options.label}-relay`, topic: options.topic });
  }

  get state(): LeaderRelayState {
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

  /** Starts the loop in the background (standby until it takes the lock); only once. */
  start(): void {
    if (this.#state !== "idle") throw new Error(`${this.#config.label} relay is ${this.#state}`);
    this.#state = "running";
    this.#loop = this.#run();
  }

  /** Looks at the table now instead of at the next poll (this process just committed rows). */
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
    const { initialMs, maxMs } = this.#config.backoff;
    let delay = initialMs;
    while (this.#state === "running") {
      try {
        if (!(await this.#lead())) continue;
        const more = await this.#publishBatch();
        delay = initialMs;
        if (!more) await this.#sleep(this.#config.pollIntervalMs);
      } catch (error) {
        this.#log.warn({ err: error, retryInMs: delay }, `${this.#config.label} relay failed; rows stay unpublished and are retried`);
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
    const { label, listen } = this.#config;
    if (!this.#client) {
      const client = new pg.Client({
        connectionString: this.#config.databaseUrl,
        application_name: this.#config.name,
        connectionTimeoutMillis: 10_000,
        statement_timeout: 30_000,
        // Notices a dead server (and so a lost lock) on an idle connection.
        keepAlive: true,
      });
      client.on("error", (error) => {
        this.#log.warn({ err: error }, `${label} relay lost its Postgres connection`);
        if (this.#client === client) this.#leader = false;
      });
      if (listen) {
        client.on("notification", (n) => {
          if (n.channel === listen.channel) this.#wake?.();
        });
      }
      this.#client = client;
      await client.connect();
    }
    if (!this.#leader) {
      const { rows } = await this.#client.query<{ locked: boolean }>(this.#config.lock.tryLock);
      if (!rows[0]!.locked) {
        await this.#sleep(this.#config.lockRetryMs);
        return false;
      }
      this.#leader = true;
      if (listen) await this.#client.query(listen.statement);
      this.#log.info(`${label} relay is active (holds the lock)`);
    }
    if (!this.#producer) {
      const { kafkaRetry } = this.#config;
      // Idempotent, acks from every in-sync replica, one send in flight (the loop awaits each); a task's events keep their
      // partition: Java's (and kafkajs') partitioner, murmur2 of the key. The producer connects on its first send.
      this.#producer = new Producer({
        clientId: this.#config.name,
        bootstrapBrokers: [...this.#config.brokers],
        idempotent: true,
        acks: -1,
        autocreateTopics: false,
        partitioner: compatibilityPartitioner,
        serializers: { key: stringSerializer, value: valueBytes, headerKey: stringSerializer, headerValue: stringSerializer },
        ...(kafkaRetry ? { retries: kafkaRetry.retries, retryDelay: kafkaRetry.delayMs } : {}),
      });
    }
    return true;
  }

  /** Publishes one batch; true when the batch was full (more may be waiting). */
  async #publishBatch(): Promise<boolean> {
    const { batchSize, topic, trace, toMessage } = this.#config;
    const client = this.#client!;
    const producer = this.#producer!;
    const rows = await this.#config.readBatch(client, batchSize);
    if (rows.length === 0) return false;
    const traced = trace ? rows.map((row) => trace(row, topic)) : undefined;
    try {
      const messages = traced ? traced.map((t) => t.message) : rows.map(toMessage);
      const send = () => producer.send({ messages: messages.map((m) => ({ topic, ...m })) });
      // With a trace hook, the relay's own producer spans stand for the send (per row, in each row's trace); the Kafka client's would be one root per batch.
      await (traced ? context.with(suppressTracing(context.active()), send) : send());
      await this.#config.afterSend?.(rows);
      await this.#config.markPublished(client, rows);
    } catch (error) {
      for (const t of traced ?? []) t.end(error);
      throw error;
    }
    for (const t of traced ?? []) t.end();
    this.#published += rows.length;
    this.#log.debug({ rows: rows.length, ...this.#config.describeBatch?.(rows) }, `${this.#config.label} batch published`);
    return rows.length >= batchSize;
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
      if (graceful && wasLeader) await client.query(this.#config.lock.unlock).catch(() => undefined);
      await client.end().catch(() => undefined);
    }
    if (producer) await producer.close(true).catch((error: unknown) => this.#log.warn({ err: error }, `${this.#config.label} relay producer disconnect failed`));
    if (wasLeader) this.#log.info(`${this.#config.label} relay released the lock`);
  }

  /** Waits `ms`, or less when woken (nudge, notification or stop). */
  #sleep(ms: number): Promise<void> {
    if (this.#state !== "running") return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#wake = undefined;
        resolve();
      }, ms);
      this.#wake = () => {
        this.#wake = undefined;
        clearTimeout(timer);
        resolve();
      };
    });
  }
}
