import type { Consumer, IHeaders, KafkaMessage } from "kafkajs";
import type { DeadLetter } from "@taskmesh/contracts/gen/taskmesh/events/v1/events";
import { unavailable, uuidv7, type Logger } from "@taskmesh/kit";
import { fromRecord, headersText } from "./cloud-event.js";
import { kafkaUnavailable, type KafkaClients } from "./kafka.js";
import { DLQ_TOPIC } from "./registry.js";

/** The headers a dead letter adds to the original record. */
export const DLQ_HEADERS = ["dlq_topic", "dlq_partition", "dlq_offset", "dlq_group", "dlq_attempts", "dlq_error", "dlq_at"] as const;
/** The header of a redrive mark (a record in the dead-letter topic naming a redriven dead letter). */
export const REDRIVEN_HEADER = "dlq_redriven";

/** What failed, for the dead-letter record. */
export interface Failure {
  readonly topic: string;
  readonly partition: number;
  readonly offset: string;
  readonly group: string;
  readonly attempts: number;
  readonly error: string;
  readonly message: Pick<KafkaMessage, "key" | "value" | "headers">;
}

/** One dead letter as the index holds it: the listing and what a redrive re-publishes. */
interface Entry {
  readonly letter: DeadLetter;
  readonly key: Buffer | null;
  readonly value: Buffer | null;
  readonly headers: IHeaders;
}

/** The filter of a listing or a redrive. */
export interface DeadLetterFilter {
  readonly topic?: string;
  readonly group?: string;
  readonly includeRedriven?: boolean;
}

/** Writes a failed record to `taskmesh.dlq`: the same key, value and headers, plus the `dlq_*` headers. */
export async function writeDeadLetter(kafka: KafkaClients, f: Failure): Promise<void> {
  const headers: IHeaders = { ...(f.message.headers ?? {}) };
  Object.assign(headers, {
    dlq_topic: f.topic, dlq_partition: String(f.partition), dlq_offset: f.offset, dlq_group: f.group,
    dlq_attempts: String(f.attempts), dlq_error: f.error.slice(0, 1024), dlq_at: new Date().toISOString(),
  });
  const producer = await kafka.producer();
  await producer.send({ topic: DLQ_TOPIC, acks: -1, messages: [{ key: f.message.key, value: f.message.value, headers }] }).catch((error: unknown) => {
    throw kafkaUnavailable(error);
  });
}

/**
 * Every dead letter of `taskmesh.dlq`, read into memory by a consumer of
 * this replica alone (a group of its own, from the beginning, committing
 * nothing), with the redrive marks applied. Listing first catches up to the
 * topic's end, so a letter written just before is listed.
 */
export class DeadLetterIndex {
  readonly #entries = new Map<string, Entry>();
  readonly #order: string[] = [];
  readonly #position = new Map<number, bigint>();
  #consumer: Consumer | undefined;

  constructor(private readonly kafka: KafkaClients, private readonly log: Logger, private readonly instance: string) {}

  /** Starts reading the topic (in the background once joined). */
  async start(): Promise<void> {
    if (this.#consumer) return;
    const consumer = this.kafka.kafka.consumer({
      groupId: `taskmesh-events-dlq-index.${this.instance}.${uuidv7()}`, maxWaitTimeInMs: 5000, allowAutoTopicCreation: false,
      sessionTimeout: 10_000, heartbeatInterval: 1000,
    });
    this.#consumer = consumer;
    try {
      await consumer.connect();
      await consumer.subscribe({ topic: DLQ_TOPIC, fromBeginning: true });
      await consumer.run({ autoCommit: false, eachMessage: async ({ partition, message }) => this.#add(partition, message) });
    } catch (error) {
      this.#consumer = undefined;
      await consumer.disconnect().catch(() => undefined);
      throw error;
    }
  }

  async stop(): Promise<void> {
    const consumer = this.#consumer;
    this.#consumer = undefined;
    await consumer?.disconnect().catch(() => undefined);
  }

  /** Waits until every record the topic holds now has been read. */
  async catchUp(signal?: AbortSignal, timeoutMs = 10_000): Promise<void> {
    if (!this.#consumer) await this.start().catch((error: unknown) => {
      throw kafkaUnavailable(error);
    });
    const ends = await this.kafka.withAdmin((admin) => admin.fetchTopicOffsets(DLQ_TOPIC));
    const until = Date.now() + timeoutMs;
    for (;;) {
      const behind = ends.filter((e) => BigInt(e.high) > BigInt(e.low) && (this.#position.get(e.partition) ?? BigInt(e.low)) < BigInt(e.high));
      if (behind.length === 0) return;
      if (Date.now() > until) throw unavailable("EXT_KAFKA_UNAVAILABLE", "the dead-letter topic could not be read in time; retry", 1000);
      signal?.throwIfAborted();
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** Dead letters matching `filter`, oldest first, after the one with id `after`. */
  list(filter: DeadLetterFilter, limit: number, after?: string): DeadLetter[] {
    let start = 0;
    if (after !== undefined) start = this.#order.indexOf(after) + 1;
    const out: DeadLetter[] = [];
    for (let i = start; i < this.#order.length && out.length < limit; i++) {
      const entry = this.#entries.get(this.#order[i]!)!;
      if (matches(entry.letter, filter)) out.push(entry.letter);
    }
    return out;
  }

  /** True when more matching letters follow the one with id `after`. */
  hasMore(filter: DeadLetterFilter, after: string): boolean {
    return this.list(filter, 1, after).length > 0;
  }

  /**
   * Publishes dead letters again to their original topic (same key, value
   * and CloudEvents headers), then writes a redrive mark for each. Returns
   * the ids redriven and those skipped (unknown or already redriven).
   */
  async redrive(selection: { readonly ids: readonly string[] } | DeadLetterFilter): Promise<{ redriven: string[]; skipped: string[] }> {
    const chosen: Entry[] = [];
    const skipped: string[] = [];
    if ("ids" in selection) {
      for (const id of selection.ids) {
        const entry = this.#entries.get(id);
        if (!entry || entry.letter.redrivenAt) skipped.push(id);
        else chosen.push(entry);
      }
    } else {
      for (const id of this.#order) {
        const entry = this.#entries.get(id)!;
        if (matches(entry.letter, { ...selection, includeRedriven: false })) chosen.push(entry);
      }
    }
    if (chosen.length === 0) return { redriven: [], skipped };
    const producer = await this.kafka.producer();
    const byTopic = new Map<string, Entry[]>();
    for (const e of chosen) byTopic.set(e.letter.topic, [...(byTopic.get(e.letter.topic) ?? []), e]);
    const at = new Date();
    try {
      await producer.sendBatch({
        acks: -1,
        topicMessages: [...byTopic].map(([topic, entries]) => ({
          topic,
          messages: entries.map((e) => ({ key: e.key, value: e.value, headers: withoutDlqHeaders(e.headers) })),
        })),
      });
      await producer.send({
        topic: DLQ_TOPIC, acks: -1,
        messages: chosen.map((e) => ({ key: e.letter.id, value: null, headers: { [REDRIVEN_HEADER]: e.letter.id, dlq_redriven_at: at.toISOString() } })),
      });
    } catch (error) {
      throw kafkaUnavailable(error);
    }
    for (const e of chosen) e.letter.redrivenAt ??= at;
    this.log.info({ count: chosen.length }, "dead letters redriven");
    return { redriven: chosen.map((e) => e.letter.id), skipped };
  }

  #add(partition: number, message: KafkaMessage): void {
    this.#position.set(partition, BigInt(message.offset) + 1n);
    const h = headersText(message.headers);
    const marked = h[REDRIVEN_HEADER];
    if (marked !== undefined) {
      const entry = this.#entries.get(marked);
      if (entry) entry.letter.redrivenAt ??= new Date(h.dlq_redriven_at ?? Number(message.timestamp));
      return;
    }
    const id = `${partition}-${message.offset}`;
    if (this.#entries.has(id)) return;
    const letter: DeadLetter = {
      id,
      event: fromRecord(message),
      topic: h.dlq_topic ?? "",
      partition: Number(h.dlq_partition ?? -1),
      offset: BigInt(h.dlq_offset ?? -1),
      consumerGroup: h.dlq_group ?? "",
      deliveryAttempts: Number(h.dlq_attempts ?? 0),
      lastError: h.dlq_error ?? "",
      deadLetteredAt: new Date(h.dlq_at ?? Number(message.timestamp)),
      redrivenAt: undefined,
    };
    this.#entries.set(id, { letter, key: message.key, value: message.value, headers: message.headers ?? {} });
    this.#insertInOrder(id, letter.deadLetteredAt!.getTime());
  }

  /** Keeps `#order` oldest first (letters of different partitions arrive interleaved). */
  #insertInOrder(id: string, at: number): void {
    let i = this.#order.length;
    while (i > 0 && this.#entries.get(this.#order[i - 1]!)!.letter.deadLetteredAt!.getTime() > at) i--;
    this.#order.splice(i, 0, id);
  }
}

function matches(letter: DeadLetter, filter: DeadLetterFilter): boolean {
  return (!filter.topic || letter.topic === filter.topic)
    && (!filter.group || letter.consumerGroup === filter.group)
    && (filter.includeRedriven === true || letter.redrivenAt === undefined);
}

function withoutDlqHeaders(headers: IHeaders): IHeaders {
  const out: IHeaders = {};
  for (const [k, v] of Object.entries(headers)) if (!k.startsWith("dlq_")) out[k] = v;
  return out;
}
