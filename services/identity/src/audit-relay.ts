import { Kafka, Partitioners, logLevel, type LogEntry, type Message, type Producer, type RetryOptions } from "kafkajs";
import pg from "pg";
import type { Logger } from "../../kit/src/index.js";
import { AUDIT_SOURCE, AUDIT_TOPIC, auditJson, auditType } from "./audit.js";
import { relaySql, type AuditRow } from "./sql/audit.js";

/** The relay's lifecycle. */
export type AuditRelayState = "idle" | "running" | "stopping" | "stopped";

/** Options of an {@link AuditRelay}. */
export interface AuditRelayOptions {
  /** The Postgres database holding schema `identity` (the relay opens one dedicated connection to it). */
  readonly databaseUrl: string;
  /** Kafka bootstrap brokers, `host:port`. */
  readonly brokers: readonly string[];
  /** The topic to publish to. @default "taskmesh.identity" */
  readonly topic?: string;
  readonly logger: Logger;
  /** Names the Postgres connection and the Kafka client id. @default "identity-audit-relay" */
  readonly name?: string;
  /** Rows per batch (one `producer.send`). @default 500 */
  readonly batchSize?: number;
  /** How long to wait before looking again when nothing is unpublished, in ms. @default 200 */
  readonly pollIntervalMs?: number;
  /** How often a standby relay tries to take the lock, in ms. @default 500 */
  readonly lockRetryMs?: number;
  /** Back-off after a Postgres or Kafka error, in ms. @default { initialMs: 200, maxMs: 5000 } */
  readonly backoff?: { readonly initialMs: number; readonly maxMs: number };
  /** kafkajs client retries (its defaults when unset). */
  readonly kafkaRetry?: RetryOptions;
}

/** The Kafka message of one audit row: key = subject, value = AuditEvent proto3 JSON, CloudEvents binary-mode headers. */
export function toAuditMessage(row: AuditRow): Message {
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
 * outbox relay does: one relay is active across replicas (the holder of a
 * session-level advisory lock on its dedicated connection); it reads
 * unpublished rows in `seq` order, sends them with one `send` on an
 * idempotent producer (acks -1, one request in flight), then marks them
 * published. A crash between the send and the mark re-sends those rows
 * (at least once; consumers deduplicate by `ce_id`); no row is ever skipped,
 * since the relay selects by `published_at IS NULL`, not by position.
 */
export class AuditRelay {
  #state: AuditRelayState = "idle";
  readonly #options: AuditRelayOptions;
  readonly #topic: string;
  readonly #kafka: Kafka;
  readonly #log: Logger;
  #producer: Producer | undefined;
  #client: pg.Client | undefined;
  #leader = false;
  #loop: Promise<void> | undefined;
  #wake: (() => void) | undefined;
  #published = 0;

  constructor(options: AuditRelayOptions) {
    this.#options = options;
    this.#topic = options.topic ?? AUDIT_TOPIC;
    this.#log = options.logger.child({ component: "audit-relay", topic: this.#topic });
    const log = this.#log;
    this.#kafka = new Kafka({
      clientId: options.name ?? "identity-audit-relay",
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

  get state(): AuditRelayState {
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
    if (this.#state !== "idle") throw new Error(`audit relay is ${this.#state}`);
    this.#state = "running";
    this.#loop = this.#run();
  }

  /** Looks at the audit log now instead of at the next poll (this process just committed rows). */
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
        if (!more) await this.#sleep(this.#options.pollIntervalMs ?? 200);
      } catch (error) {
        this.#log.warn({ err: error, retryInMs: delay }, "audit relay failed; rows stay unpublished and are retried");
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
        application_name: this.#options.name ?? "identity-audit-relay",
        connectionTimeoutMillis: 10_000,
        statement_timeout: 30_000,
        keepAlive: true,
      });
      client.on("error", (error) => {
        this.#log.warn({ err: error }, "audit relay lost its Postgres connection");
        if (this.#client === client) this.#leader = false;
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
      this.#log.info("audit relay is active (holds the lock)");
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
    const { rows } = await client.query<AuditRow>({ ...relaySql.unpublished, values: [batchSize] });
    if (rows.length === 0) return false;
    await this.#producer!.send({ topic: this.#topic, acks: -1, messages: rows.map(toAuditMessage) });
    await client.query({ ...relaySql.markPublished, values: [rows.map((r) => r.seq)] });
    this.#published += rows.length;
    this.#log.debug({ rows: rows.length, lastSeq: rows.at(-1)!.seq }, "audit batch published");
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
    if (producer) await producer.disconnect().catch((error: unknown) => this.#log.warn({ err: error }, "audit relay producer disconnect failed"));
    if (wasLeader) this.#log.info("audit relay released the lock");
  }

  /** Waits `ms`, or less when woken (nudge or stop). */
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
