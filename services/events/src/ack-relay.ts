import type { Redis } from "ioredis";
import { notFound, unavailable, uuidv7, type Logger } from "@taskmesh/kit";
import type { NackSpec, SettleResult } from "./deliveries.js";
import type { Subscription } from "./subscription.js";

const SUBSCRIPTION = "taskmesh:events:sub:";
const REPLY = "taskmesh:events:reply:";

/** A settlement forwarded to the replica holding the subscription. */
interface Forwarded {
  readonly requestId: string;
  readonly replyTo: string;
  readonly ackTokens: readonly string[];
  readonly nacks: readonly NackSpec[];
}

/** The holder's answer. */
interface Reply {
  readonly requestId: string;
  readonly result?: SettleResult;
  readonly gone?: boolean;
}

/**
 * Lets Acknowledge reach any replica, over Redis pub/sub: the replica
 * holding a subscription listens on `taskmesh:events:sub:<id>`; another
 * replica publishes the acks and nacks there and waits for the answer on
 * its own reply channel. No listener (PUBLISH reaches nobody) means the
 * subscription has ended: NOT_FOUND.
 */
export class AckRelay {
  readonly #replyChannel = `${REPLY}${uuidv7()}`;
  readonly #local = new Map<string, Subscription>();
  readonly #waiting = new Map<string, (reply: Reply) => void>();

  /** `pub` sends; `sub` is a connection of its own in subscriber mode. */
  constructor(private readonly pub: Redis, private readonly sub: Redis, private readonly log: Logger, private readonly timeoutMs = 5000) {
    sub.on("message", (channel: string, raw: string) => void this.#onMessage(channel, raw));
  }

  /** Starts listening for replies. */
  async start(): Promise<void> {
    if (this.sub.status === "wait") await this.sub.connect();
    await this.sub.subscribe(this.#replyChannel);
  }

  async stop(): Promise<void> {
    this.#local.clear();
    this.sub.disconnect();
  }

  /** Serves settlements of `subscription` from other replicas until {@link release}. */
  async hold(subscription: Subscription): Promise<void> {
    this.#local.set(subscription.id, subscription);
    await this.sub.subscribe(SUBSCRIPTION + subscription.id).catch((error: unknown) => {
      this.log.warn({ err: error }, "acknowledgements from other replicas cannot reach this subscription (redis)");
    });
  }

  release(subscription: Subscription): void {
    if (this.#local.get(subscription.id) !== subscription) return;
    this.#local.delete(subscription.id);
    void this.sub.unsubscribe(SUBSCRIPTION + subscription.id).catch(() => undefined);
  }

  /** Settles on the replica holding `subscriptionId`; NOT_FOUND when none does. */
  async forward(subscriptionId: string, ackTokens: readonly string[], nacks: readonly NackSpec[], signal?: AbortSignal): Promise<SettleResult> {
    const requestId = uuidv7();
    const message: Forwarded = { requestId, replyTo: this.#replyChannel, ackTokens, nacks };
    const answered = new Promise<Reply>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiting.delete(requestId);
        reject(unavailable("SYS_REPLICA_UNREACHABLE", "the replica holding the subscription did not answer; retry", 500));
      }, this.timeoutMs);
      signal?.addEventListener("abort", () => {
        clearTimeout(timer);
        this.#waiting.delete(requestId);
        reject(signal.reason);
      }, { once: true });
      this.#waiting.set(requestId, (reply) => {
        clearTimeout(timer);
        this.#waiting.delete(requestId);
        resolve(reply);
      });
    });
    answered.catch(() => undefined);
    let receivers: number;
    try {
      receivers = await this.pub.publish(SUBSCRIPTION + subscriptionId, JSON.stringify(message));
    } catch (error) {
      this.#waiting.get(requestId)?.({ requestId, gone: true });
      throw unavailable("EXT_REDIS_UNAVAILABLE", "acknowledgements cannot be forwarded (redis)", 1000, error);
    }
    if (receivers === 0) {
      this.#waiting.get(requestId)?.({ requestId, gone: true });
      throw subscriptionGone(subscriptionId);
    }
    const reply = await answered;
    if (reply.gone || !reply.result) throw subscriptionGone(subscriptionId);
    return reply.result;
  }

  async #onMessage(channel: string, raw: string): Promise<void> {
    try {
      if (channel === this.#replyChannel) {
        const reply = JSON.parse(raw) as Reply;
        this.#waiting.get(reply.requestId)?.(reply);
        return;
      }
      if (!channel.startsWith(SUBSCRIPTION)) return;
      const request = JSON.parse(raw) as Forwarded;
      const subscription = this.#local.get(channel.slice(SUBSCRIPTION.length));
      const reply: Reply = subscription && subscription.state === "running"
        ? { requestId: request.requestId, result: subscription.settle(request.ackTokens, request.nacks) }
        : { requestId: request.requestId, gone: true };
      await this.pub.publish(request.replyTo, JSON.stringify(reply));
    } catch (error) {
      this.log.warn({ err: error, channel }, "a forwarded acknowledgement could not be handled");
    }
  }
}

/** NOT_FOUND for an ended (or unknown) subscription. */
export function subscriptionGone(subscriptionId: string) {
  return notFound("RES_SUBSCRIPTION_NOT_FOUND", "the subscription has ended; its unsettled deliveries go to the group again", { subscription_id: subscriptionId });
}
