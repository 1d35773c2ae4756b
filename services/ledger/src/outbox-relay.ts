import { TOPICS } from "@taskmesh/contracts";
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, propagation, trace } from "@opentelemetry/api";
import type pg from "pg";
import { LeaderRelay, type LeaderRelaySettings, type LeaderRelayState, type RelayedMessage, type RelayMessage } from "@taskmesh/kit/pg/leader-relay";
import { traceContextOf } from "@taskmesh/kit/trace-context";
import { RELAY_CHANNEL, relaySql, type OutboxRow, type RelayCursor, type TransitionRow } from "./sql/relay.js";
import { eventType } from "./records.js";
import { transitionEventBytes } from "./transition-events.js";
import { EVENT_SOURCE } from "./writer.js";

/**
 * The CloudEvents `source` (`ce_source`) of every event the relay publishes:
 * the producer named by the contract (`TaskEvent.source`, `//taskmesh.dev/ledger`),
 * so the header and the payload agree.
 */
export const RELAY_SOURCE = EVENT_SOURCE;

/** The default Kafka topic of task events. */
export const TASKS_TOPIC = TOPICS.tasks;

/** The relay's lifecycle. */
export type RelayState = LeaderRelayState;

/** Options of an `OutboxRelay`. */
export interface OutboxRelayOptions extends LeaderRelaySettings {
  /** The Postgres database holding schema `ledger` (the relay opens one dedicated connection to it). */
  readonly databaseUrl: string;
  /** The topic to publish to. @default "taskmesh.tasks" */
  readonly topic?: string;
  /** Names the Postgres connection (`application_name`) and the Kafka client id. @default "ledger-outbox-relay" */
  readonly name?: string;
  /**
   * How long to wait for a nudge before looking again when the outbox is
   * empty, in ms. The coordinator writes a task's transitions on its own
   * connection and cannot nudge this process, so this bounds how late their
   * events leave. @default 50
   */
  readonly pollIntervalMs?: number;
  /** Test seam: runs after a batch is acknowledged by Kafka and before the cursor moves past it. */
  readonly afterSend?: (rows: readonly RelayRow[]) => void | Promise<void>;
}

/** One event on its way: a transition (its history row) or a progress report (its outbox row). */
export type RelayRow = { readonly source: "history"; readonly row: TransitionRow } | { readonly source: "outbox"; readonly row: OutboxRow };

/** What a Kafka record says of its event, whichever table it came from. */
export interface EventFacts {
  readonly eventId: string;
  readonly taskId: string;
  readonly sequence: string;
  readonly type: string;
  readonly traceparent: string;
  readonly time: Date;
}

function factsOf(r: RelayRow): EventFacts {
  if (r.source === "outbox") {
    const o = r.row;
    return { eventId: o.event_id, taskId: o.task_id, sequence: String(o.sequence), type: o.type, traceparent: o.traceparent, time: o.created_at };
  }
  const h = r.row;
  return { eventId: h.event_id, taskId: h.task_id, sequence: String(h.sequence), type: eventType(h.kind), traceparent: h.traceparent ?? "", time: h.at };
}

const tracer = trace.getTracer("taskmesh.ledger.outbox-relay");

/**
 * The span of one event's publish, in its task's trace (a child of the
 * task's traceparent): `<topic> publish`, the relay's Kafka producer span
 * (one per event, the relay's only span: it runs for every transition of
 * every task). The message carries its traceparent, so consumers continue
 * from it; without tracing it keeps the task's.
 */
function publishSpans(r: RelayRow, topic: string): RelayedMessage {
  const f = factsOf(r);
  const publish = tracer.startSpan(`${topic} publish`, {
    kind: SpanKind.PRODUCER,
    attributes: {
      "taskmesh.task_id": f.taskId, "taskmesh.task.sequence": f.sequence, "cloudevents.event_id": f.eventId, "cloudevents.event_type": f.type,
      "messaging.system": "kafka", "messaging.operation.type": "send", "messaging.operation.name": "send",
      "messaging.destination.name": topic, "messaging.message.id": f.eventId, "messaging.kafka.message.key": f.taskId,
    },
  }, traceContextOf({ traceparent: f.traceparent }));
  const message = messageOf(r, f);
  const carrier: Record<string, string> = {};
  propagation.inject(trace.setSpan(ROOT_CONTEXT, publish), carrier);
  if (carrier.traceparent) message.headers = { ...message.headers, traceparent: carrier.traceparent };
  return {
    message,
    end: (error) => {
      if (error !== undefined) publish.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) });
      publish.end();
    },
  };
}

/** The Kafka message of one event: key = task id, value = TaskEvent bytes, CloudEvents binary-mode headers. */
export function toMessage(r: RelayRow): RelayMessage {
  return messageOf(r, factsOf(r));
}

/** {@link toMessage} from the event's facts, read once by the caller. */
function messageOf(r: RelayRow, f: EventFacts): RelayMessage {
  const headers: Record<string, string> = {
    ce_specversion: "1.0",
    ce_id: f.eventId,
    ce_type: f.type,
    ce_source: RELAY_SOURCE,
    ce_subject: f.taskId,
    ce_time: f.time.toISOString(),
    "content-type": "application/protobuf",
    taskmesh_sequence: f.sequence,
  };
  if (f.traceparent) headers.traceparent = f.traceparent;
  return { key: f.taskId, value: r.source === "outbox" ? r.row.payload : transitionEventBytes(r.row), headers };
}

/** Compares two positions in the relay's order: txid, then task id (uuid order is its lower-case text's), then sequence. */
function comparePositions(a: RelayCursor, b: RelayCursor): number {
  const byTx = BigInt(a.txid) - BigInt(b.txid);
  if (byTx !== 0n) return byTx < 0n ? -1 : 1;
  if (a.task_id !== b.task_id) return a.task_id < b.task_id ? -1 : 1;
  const bySeq = BigInt(a.sequence) - BigInt(b.sequence);
  return bySeq === 0n ? 0 : bySeq < 0n ? -1 : 1;
}

/**
 * How many of `rows` (in the relay's order) may go now: all of them, unless
 * a task's transition comes before its previous transition in that order
 * (the previous one has the larger txid) and the previous one is not among
 * those that go; then the batch ends before it, and it goes with its
 * predecessor in a later batch.
 */
export function publishablePrefix(rows: readonly TransitionRow[]): number {
  const at = new Map(rows.map((r, i) => [`${r.task_id}/${r.sequence}`, i]));
  let end = rows.length;
  for (let i = 0; i < end; i++) {
    const r = rows[i]!;
    if (r.prev_txid === null || BigInt(r.prev_txid) <= BigInt(r.txid)) continue;
    const previous = at.get(`${r.task_id}/${BigInt(r.sequence) - 1n}`);
    if (previous === undefined || previous >= end) {
      end = i;
      i = -1; // look again: a row before the new end may have had its predecessor cut off
    }
  }
  return end;
}

/** The events of one batch in the order they are sent: per task, by sequence, a progress report after the transition it follows. */
function inSendOrder(transitions: readonly TransitionRow[], progress: readonly OutboxRow[]): RelayRow[] {
  const keyed = [
    ...transitions.map((row) => ({ event: { source: "history", row } as RelayRow, task: row.task_id, sequence: BigInt(row.sequence), after: 0n })),
    ...progress.map((row) => ({ event: { source: "outbox", row } as RelayRow, task: row.task_id, sequence: BigInt(row.sequence), after: 1n + BigInt(row.id) })),
  ];
  keyed.sort((a, b) => (a.task !== b.task ? (a.task < b.task ? -1 : 1) : a.sequence !== b.sequence ? (a.sequence < b.sequence ? -1 : 1) : a.after < b.after ? -1 : a.after > b.after ? 1 : 0));
  return keyed.map((k) => k.event);
}

/**
 * Publishes every task event to Kafka: each transition from its history
 * row (`ledger.history` is the outbox of transitions), each progress report
 * from `ledger.outbox`.
 *
 * One relay is active across ledger replicas (see {@link LeaderRelay}): the
 * one holding the advisory lock `RELAY_LOCK` on its dedicated Postgres
 * connection. It keeps a cursor in `ledger.relay_cursor`: the last
 * transition it published, in (txid, task id, sequence) order. It reads the
 * transitions past the cursor, but only of transactions older than every
 * transaction still running, so none that commits later can land behind the
 * cursor (transactions commit out of txid order), builds each event from the
 * history row and its task, sends the batch with one `producer.send` on an
 * idempotent producer (key = task id), then moves the cursor: one row
 * written per batch, none per event. A task's transitions go in sequence
 * order: a transaction can take its txid before it waits for the task's
 * lock, so a transition can have a smaller txid than the one before it;
 * such a transition waits for a batch that also carries its predecessor
 * ({@link publishablePrefix}). A progress report goes once the transition it
 * reports under has been published, and then leaves the outbox.
 *
 * Delivery is at least once: a crash (or a lost connection) between the send
 * and the cursor's move re-sends those events. Consumers deduplicate by
 * `ce_id` (the event id); per task, the first copies of the transitions are
 * in sequence order. Each publish is traced in its task's trace.
 */
export class OutboxRelay extends LeaderRelay<RelayRow> {
  /** The cursor each read batch moves to once Kafka has it. */
  readonly #moveTo = new WeakMap<readonly RelayRow[], RelayCursor>();
  /** Where the relay stands, as read on its current connection. */
  #cursor: { readonly client: pg.ClientBase; position: RelayCursor } | undefined;

  constructor(options: OutboxRelayOptions) {
    super({
      ...options,
      topic: options.topic ?? TASKS_TOPIC,
      name: options.name ?? "ledger-outbox-relay",
      label: "outbox",
      pollIntervalMs: options.pollIntervalMs ?? 50,
      lock: { tryLock: relaySql.tryLock, unlock: relaySql.unlock },
      listen: { channel: RELAY_CHANNEL, statement: relaySql.listen },
      readBatch: (client, limit) => this.#read(client, limit),
      markPublished: (client, rows) => this.#published(client, rows),
      toMessage,
      trace: publishSpans,
      describeBatch: (rows) => ({ cursor: this.#moveTo.get(rows) }),
    });
  }

  async #read(client: pg.ClientBase, limit: number): Promise<RelayRow[]> {
    if (this.#cursor?.client !== client) {
      const position = (await client.query<RelayCursor>(relaySql.cursor)).rows[0];
      if (!position) throw new Error("ledger.relay_cursor has no row 'tasks' (migration 0011 writes it)");
      this.#cursor = { client, position };
    }
    const from = this.#cursor.position;
    let transitions: TransitionRow[] = [];
    for (let n = limit; ; n *= 2) {
      const rows = (await client.query<TransitionRow>({ ...relaySql.transitions, values: [from.txid, from.task_id, from.sequence, n] })).rows;
      const end = publishablePrefix(rows);
      // Nothing may go yet, and the predecessor may lie past what was read: read further.
      if (end === 0 && rows.length === n) continue;
      transitions = rows.slice(0, end);
      break;
    }
    const last = transitions.at(-1);
    const to: RelayCursor = last ? { txid: last.txid, task_id: last.task_id, sequence: String(last.sequence) } : from;
    const progress = (await client.query<OutboxRow>({ ...relaySql.progress, values: [to.txid, to.task_id, to.sequence, limit] })).rows;
    const batch = inSendOrder(transitions, progress);
    this.#moveTo.set(batch, to);
    return batch;
  }

  async #published(client: pg.ClientBase, rows: readonly RelayRow[]): Promise<void> {
    const to = this.#moveTo.get(rows);
    if (to && this.#cursor && comparePositions(to, this.#cursor.position) > 0) {
      await client.query({ ...relaySql.advance, values: [to.txid, to.task_id, to.sequence] });
      this.#cursor.position = to;
    }
    const progress = rows.flatMap((r) => (r.source === "outbox" ? [r.row.id] : []));
    if (progress.length > 0) await client.query({ ...relaySql.markPublished, values: [progress] });
  }
}
