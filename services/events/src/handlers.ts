import { trace, type Tracer } from "@opentelemetry/api";
import type { EventServiceService } from "@taskmesh/contracts/gen/taskmesh/events/v1/events";
import {
  Violations, decodePageToken, durationMs, encodePageToken, pageSize, requireScope, uuidv7, type ServiceHandlers,
} from "@taskmesh/kit";
import type { LagGroup } from "@taskmesh/kit/metrics";
import { subscriptionGone, type AckRelay } from "./ack-relay.js";
import type { AttemptStore } from "./attempts.js";
import type { DeadLetterIndex } from "./dead-letters.js";
import type { NackSpec } from "./deliveries.js";
import type { KafkaClients } from "./kafka.js";
import type { Publisher } from "./publisher.js";
import { isTopicName } from "./registry.js";
import { Subscription } from "./subscription.js";
import { checkSubscribe } from "./validation.js";

/** The most tokens (acks, nacks, redrive ids) one request may carry. */
const MAX_TOKENS = 1000;
const MAX_REASON_BYTES = 1024;
const MAX_NACK_DELAY_MS = 600_000;

/** The open subscriptions of this replica, by id. */
export class Subscriptions {
  readonly #open = new Map<string, Subscription>();

  add(subscription: Subscription): void {
    this.#open.set(subscription.id, subscription);
  }

  get(id: string): Subscription | undefined {
    return this.#open.get(id);
  }

  delete(subscription: Subscription): void {
    if (this.#open.get(subscription.id) === subscription) this.#open.delete(subscription.id);
  }

  get size(): number {
    return this.#open.size;
  }

  /** The named groups open here and their topics, for `kafka_consumer_lag` (private groups commit nothing). */
  groups(): LagGroup[] {
    const topics = new Map<string, Set<string>>();
    for (const s of this.#open.values()) {
      if (!s.shared) continue;
      topics.set(s.group, (topics.get(s.group) ?? new Set()).add(s.topic));
    }
    return [...topics].map(([groupId, set]) => ({ groupId, topics: [...set] }));
  }

  /** Ends every subscription (shutdown): what they had unsettled goes back to their groups. */
  async closeAll(): Promise<void> {
    await Promise.all([...this.#open.values()].map((s) => s.close()));
    this.#open.clear();
  }
}

/** What the EventService handlers work with. */
export interface EventHandlerDeps {
  readonly kafka: KafkaClients;
  readonly publisher: Publisher;
  readonly subscriptions: Subscriptions;
  readonly deadLetters: DeadLetterIndex;
  /** Keeps failed-delivery counts across reconnects; without it they live in each subscription. */
  readonly attempts?: AttemptStore;
  /** Forwards acknowledgements to the replica holding a subscription; without it only local ones are found. */
  readonly relay?: AckRelay;
  /** @default the `taskmesh-events` tracer of the global provider */
  readonly tracer?: Tracer;
}

/** The EventService handlers. */
export function eventHandlers(deps: EventHandlerDeps): ServiceHandlers<typeof EventServiceService> {
  const tracer = deps.tracer ?? trace.getTracer("taskmesh-events");
  return {
    async publish(request, ctx) {
      requireScope(ctx.metadata, "events:write");
      return deps.publisher.publish(request, ctx.signal);
    },

    async subscribe(request, send, ctx) {
      requireScope(ctx.metadata, "events:read");
      const spec = checkSubscribe(request);
      let failed: (error: unknown) => void = () => undefined;
      const failure = new Promise<never>((_, reject) => (failed = reject));
      failure.catch(() => undefined);
      const subscription = new Subscription({
        id: uuidv7(), spec, kafka: deps.kafka, send, log: ctx.log.child({ topic: spec.topic }), tracer,
        onFailure: (error) => failed(error), ...(deps.attempts ? { attempts: deps.attempts } : {}),
      });
      deps.subscriptions.add(subscription);
      try {
        await subscription.start();
        await deps.relay?.hold(subscription);
        ctx.log.debug({ subscription: subscription.id, group: subscription.group }, "subscribed");
        // The caller may have gone while the group was being joined: then the abort event has fired already.
        const ended = new Promise<void>((resolve) => {
          if (ctx.signal.aborted) resolve();
          else ctx.signal.addEventListener("abort", () => resolve(), { once: true });
        });
        await Promise.race([ended, failure]);
      } finally {
        deps.relay?.release(subscription);
        deps.subscriptions.delete(subscription);
        await subscription.close();
      }
    },

    async acknowledge(request, ctx) {
      requireScope(ctx.metadata, "events:read");
      const v = new Violations();
      if (request.subscriptionId === "") v.add("subscription_id", "required");
      if (request.ackTokens.length > MAX_TOKENS) v.add("ack_tokens", `at most ${MAX_TOKENS}`);
      if (request.nacks.length > MAX_TOKENS) v.add("nacks", `at most ${MAX_TOKENS}`);
      if (request.ackTokens.length === 0 && request.nacks.length === 0) v.add("ack_tokens", "give at least one ack token or nack");
      const nacks: NackSpec[] = request.nacks.map((n, i) => {
        if (n.ackToken === "") v.add(`nacks[${i}].ack_token`, "required");
        if (Buffer.byteLength(n.reason) > MAX_REASON_BYTES) v.add(`nacks[${i}].reason`, `at most ${MAX_REASON_BYTES} bytes`);
        const delayMs = durationMs(n.delay) ?? 0;
        if (delayMs < 0 || delayMs > MAX_NACK_DELAY_MS) v.add(`nacks[${i}].delay`, "0s..10m");
        if (n.delay && !n.requeue && delayMs > 0) v.add(`nacks[${i}].delay`, "only with requeue");
        return { token: n.ackToken, requeue: n.requeue, delayMs, reason: n.reason };
      });
      v.check();
      const subscription = deps.subscriptions.get(request.subscriptionId);
      if (subscription?.state === "running") return subscription.settle(request.ackTokens, nacks);
      if (subscription === undefined && deps.relay) return deps.relay.forward(request.subscriptionId, request.ackTokens, nacks, ctx.signal);
      throw subscriptionGone(request.subscriptionId);
    },

    async listDeadLetters(request, ctx) {
      requireScope(ctx.metadata, "events:read");
      const limit = pageSize(request.pageSize);
      const filter = { topic: request.topic, group: request.consumerGroup, includeRedriven: request.includeRedriven };
      const scope = `dlq:${request.topic}:${request.consumerGroup}:${request.includeRedriven}`;
      const cursor = decodePageToken(request.pageToken, scope);
      await deps.deadLetters.catchUp(ctx.signal);
      const after = typeof cursor === "string" ? cursor : undefined;
      const page = deps.deadLetters.list(filter, limit, after);
      const last = page.at(-1);
      const more = page.length === limit && last !== undefined && deps.deadLetters.hasMore(filter, last.id);
      return { deadLetters: page, nextPageToken: more ? encodePageToken(scope, last.id) : "" };
    },

    async redrive(request, ctx) {
      requireScope(ctx.metadata, "admin");
      const v = new Violations();
      if (request.ids.length === 0 && request.topic === "" && request.consumerGroup === "") {
        v.add("ids", "give dead letter ids, or a topic and/or consumer_group to redrive every one of them", "VAL_MISSING_SELECTION");
      }
      if (request.ids.length > MAX_TOKENS) v.add("ids", `at most ${MAX_TOKENS}`);
      request.ids.forEach((id, i) => {
        if (id === "") v.add(`ids[${i}]`, "empty id");
      });
      if (request.topic !== "" && !isTopicName(request.topic)) v.add("topic", "not a Kafka topic name");
      v.check();
      await deps.deadLetters.catchUp(ctx.signal);
      const { redriven, skipped } = await deps.deadLetters.redrive(
        request.ids.length > 0 ? { ids: request.ids } : { topic: request.topic, group: request.consumerGroup },
      );
      return { redrivenCount: BigInt(redriven.length), redrivenIds: redriven.slice(0, MAX_TOKENS), skippedIds: skipped };
    },
  };
}
