import { ROOT_CONTEXT, SpanKind, SpanStatusCode, propagation, trace } from "@opentelemetry/api";
import { LeaderRelay, type LeaderRelaySettings, type LeaderRelayState, type RelayedMessage, type RelayMessage } from "../../kit/src/pg/leader-relay.js";
import { traceContextOf } from "../../kit/src/trace-context.js";
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
  /** Test seam: runs after a batch is acknowledged by Kafka and before it leaves the outbox. */
  readonly afterSend?: (rows: readonly OutboxRow[]) => void | Promise<void>;
}

const tracer = trace.getTracer("taskmesh.ledger.outbox-relay");

/**
 * The span of one row's publish, in its task's trace (a child of the row's
 * traceparent): `<topic> publish`, the relay's Kafka producer span (one per
 * row, the relay's only span: it runs for every transition of every task).
 * The message carries its traceparent, so consumers continue from it;
 * without tracing it keeps the row's.
 */
function publishSpans(row: OutboxRow, topic: string): RelayedMessage {
  const publish = tracer.startSpan(`${topic} publish`, {
    kind: SpanKind.PRODUCER,
    attributes: {
      "taskmesh.task_id": row.task_id, "taskmesh.outbox.id": String(row.id), "cloudevents.event_id": row.event_id, "cloudevents.event_type": row.type,
      "messaging.system": "kafka", "messaging.operation.type": "send", "messaging.operation.name": "send",
      "messaging.destination.name": topic, "messaging.message.id": row.event_id, "messaging.kafka.message.key": row.task_id,
    },
  }, traceContextOf({ traceparent: row.traceparent }));
  const message = toMessage(row);
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

/** The Kafka message of one outbox row: key = task id, value = TaskEvent bytes, CloudEvents binary-mode headers. */
export function toMessage(row: OutboxRow): RelayMessage {
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
 * One relay is active across ledger replicas (see {@link LeaderRelay}): the
 * one holding the advisory lock `RELAY_LOCK` on its dedicated Postgres
 * connection. The active relay reads unpublished rows in id order (at most
 * `batchSize`), sends them with one `producer.send` on an idempotent producer
 * (key = task id), then deletes them from the outbox (Kafka keeps the
 * events, `ledger.history` the transitions). A task's rows are written under
 * its row lock, so their ids follow its sequence and its events reach the
 * task's partition in order. Each row's publish is traced in its task's trace
 * (`outbox relay` and `<topic> publish` spans).
 *
 * Delivery is at least once: a crash (or a lost connection) between the send
 * and the delete re-sends those rows. Consumers deduplicate by `ce_id` (the
 * event id); per task, the first copies of the events are in sequence order.
 */
export class OutboxRelay extends LeaderRelay<OutboxRow> {
  constructor(options: OutboxRelayOptions) {
    super({
      ...options,
      topic: options.topic ?? TASKS_TOPIC,
      name: options.name ?? "ledger-outbox-relay",
      label: "outbox",
      pollIntervalMs: options.pollIntervalMs ?? 50,
      lock: { tryLock: relaySql.tryLock, unlock: relaySql.unlock },
      listen: { channel: RELAY_CHANNEL, statement: relaySql.listen },
      readBatch: async (client, limit) => (await client.query<OutboxRow>({ ...relaySql.unpublished, values: [limit] })).rows,
      markPublished: async (client, rows) => void (await client.query({ ...relaySql.markPublished, values: [rows.map((r) => r.id)] })),
      toMessage,
      trace: publishSpans,
      describeBatch: (rows) => ({ lastId: rows.at(-1)!.id }),
    });
  }
}
