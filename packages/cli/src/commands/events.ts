/**
 * `taskmesh events tail`: follows a topic through the events service's
 * Subscribe stream (a private group: nothing is committed, other groups are
 * unaffected) and prints one line per event, acknowledging each once
 * printed. Returns its exit code: 2 for bad input, 1 for a failed call,
 * 130 when Ctrl-C stopped it.
 */
import { TOPICS } from "@taskmesh/contracts";
import { Delivery, EventServiceService, type SubscribeRequest } from "@taskmesh/contracts/gen/taskmesh/events/v1/events";
import type { MeshClient } from "@taskmesh/kit";
import { report, serviceAddress, stdio, UsageError, withClient, type Io } from "./rpc.js";

/** Exit code when Ctrl-C stopped the tail (128 + SIGINT). */
const EXIT_INTERRUPTED = 130;

/** The options of `taskmesh events tail`. */
export interface TailOptions {
  /** Event types to print: exact, or a prefix ending in `.*`; repeatable. @default all */
  readonly type?: readonly string[];
  /** The topic. @default taskmesh.tasks */
  readonly topic?: string;
  /** `latest` (the default), `earliest`, or an ISO 8601 time. */
  readonly from?: string;
  /** Print each delivery as one line of proto3 JSON. */
  readonly json?: boolean;
  /** An events instance, `host:port`. @default TASKMESH_UPSTREAM_EVENTS, else the running one */
  readonly address?: string;
}

/** The Subscribe request of a tail: a private group, the start position and type filter asked for. */
export function tailRequest(opts: TailOptions): SubscribeRequest {
  const from = opts.from ?? "latest";
  let startPosition: SubscribeRequest["startPosition"];
  if (from === "latest") startPosition = { $case: "latest", value: {} };
  else if (from === "earliest") startPosition = { $case: "earliest", value: {} };
  else {
    const at = new Date(from);
    if (!/^\d{4}-\d{2}-\d{2}/.test(from) || Number.isNaN(at.getTime())) throw new UsageError(`--from: expected earliest, latest or an ISO 8601 time, got ${JSON.stringify(from)}`);
    startPosition = { $case: "timestamp", value: at };
  }
  for (const t of opts.type ?? []) {
    if (!/^[A-Za-z0-9._-]+(\.\*)?$/.test(t)) throw new UsageError(`--type: expected an event type or a prefix ending in .*, got ${JSON.stringify(t)}`);
  }
  return {
    topic: opts.topic ?? TOPICS.tasks, consumerGroup: "", startPosition, types: [...(opts.type ?? [])],
    maxInFlight: 0, ackDeadline: undefined, maxDeliveryAttempts: 0,
  };
}

/** One human line per delivery: when it was stored, where, its type, subject, id and data. */
export function tailLine(d: Delivery): string {
  const e = d.event;
  const at = d.publishedAt?.toISOString() ?? "-";
  const data = e?.data === undefined ? "" : JSON.stringify(e.data);
  return `${at} ${d.topic}/${d.partition}@${d.offset} ${e?.type ?? "?"} ${e?.subject || "-"} ${e?.id ?? "?"} ${data}`.trimEnd();
}

/** `taskmesh events tail`: prints events until Ctrl-C (or the stream ends). */
export async function eventsTail(opts: TailOptions, io: Io = stdio, signal?: AbortSignal): Promise<number> {
  const request = tailRequest(opts);
  return withClient(EventServiceService, serviceAddress("events", opts.address), async (client) => {
    const controller = new AbortController();
    const stop = (): void => controller.abort();
    const outer = signal ?? controller.signal;
    if (signal) signal.addEventListener("abort", stop, { once: true });
    else process.on("SIGINT", stop).on("SIGTERM", stop);
    const acks = new AckBatcher(client);
    try {
      for await (const message of client.subscribe(request, { signal: controller.signal })) {
        const payload = message.payload;
        if (payload?.$case === "subscription") {
          acks.subscriptionId = payload.value.subscriptionId;
          if (!opts.json) io.err(`following ${request.topic} (partitions ${payload.value.partitions.join(",") || "none yet"})`);
        } else if (payload?.$case === "delivery") {
          io.out(opts.json ? JSON.stringify(Delivery.toJSON(payload.value)) : tailLine(payload.value));
          acks.add(payload.value.ackToken);
        }
      }
      return 0;
    } catch (error) {
      if (outer.aborted || controller.signal.aborted) return EXIT_INTERRUPTED;
      return report(error, io);
    } finally {
      await acks.close();
      if (!signal) process.off("SIGINT", stop).off("SIGTERM", stop);
    }
  }, io);
}

/** Acknowledges printed deliveries in batches (at most every 100 ms), so a fast topic costs few calls. */
class AckBatcher {
  subscriptionId = "";
  private tokens: string[] = [];
  private timer: NodeJS.Timeout | undefined;
  private inFlight: Promise<unknown> = Promise.resolve();

  constructor(private readonly client: MeshClient<typeof EventServiceService>) {}

  add(token: string): void {
    this.tokens.push(token);
    this.timer ??= setTimeout(() => this.flush(), 100);
  }

  private flush(): void {
    this.timer = undefined;
    const ackTokens = this.tokens.splice(0, 1000);
    if (ackTokens.length === 0 || this.subscriptionId === "") return;
    this.inFlight = this.inFlight.then(() => this.client.acknowledge({ subscriptionId: this.subscriptionId, ackTokens, nacks: [] }, { timeoutMs: 5000 }).catch(() => undefined));
    if (this.tokens.length > 0) this.timer = setTimeout(() => this.flush(), 0);
  }

  async close(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.inFlight;
  }
}
