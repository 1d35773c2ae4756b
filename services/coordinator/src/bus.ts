import { Redis } from "ioredis";
import { TaskCancellation } from "@taskmesh/contracts/gen/taskmesh/coordinator/v1/worker_service";
import { TaskProgressUpdate, TaskTransition } from "@taskmesh/contracts/gen/taskmesh/task/v1/task";
import type { Logger } from "@taskmesh/kit";

/** A change of one task, as watchers receive it. */
export type TaskNews = { readonly kind: "transition"; readonly transition: TaskTransition } | { readonly kind: "progress"; readonly update: TaskProgressUpdate };
/** An order for the replica holding a worker's stream. */
export type WorkerOrder = { readonly kind: "cancel"; readonly cancel: TaskCancellation } | { readonly kind: "replaced"; readonly sessionId: string };

const TASK = "taskmesh:task:";
const WORKER = "taskmesh:worker:";
const WORK = "taskmesh:work";
/** The least time between two announcements of one capability's work: a burst of submits or promotions sends one. */
const WORK_NEWS_MS = 20;

/**
 * What the coordinator replicas tell each other, over Redis pub/sub: a
 * task's transitions and progress (for watchers on any replica), orders for
 * the replica holding a worker's stream (cancel a task, session replaced),
 * and "work is due" for a capability (wakes every dispatcher). It is a fast
 * path only: the ledger stays the truth, watchers and dispatchers also poll
 * it, so a lost message delays and never loses anything. While Redis is down
 * publishing is skipped.
 */
export class Bus {
  private readonly pub: Redis;
  private readonly sub: Redis;
  private readonly listeners = new Map<string, Set<(payload: string) => void>>();
  private lastError = 0;
  /** When each capability's work was last announced. */
  private readonly workAnnounced = new Map<string, number>();

  constructor(url: string, private readonly log: Logger) {
    const options = { lazyConnect: true, maxRetriesPerRequest: 1, enableAutoPipelining: true, connectionName: "taskmesh-coordinator" } as const;
    this.pub = new Redis(url, { ...options, enableOfflineQueue: false });
    this.sub = new Redis(url, options);
    for (const client of [this.pub, this.sub]) client.on("error", (error: Error) => this.warn(error));
    this.sub.on("message", (channel: string, payload: string) => {
      for (const listener of this.listeners.get(channel) ?? []) listener(payload);
    });
  }

  /** The command connection, shared with the submit dedup. */
  get redis(): Redis {
    return this.pub;
  }

  async connect(): Promise<void> {
    if (this.pub.status === "wait") await this.pub.connect();
    if (this.sub.status === "wait") await this.sub.connect();
    await this.pub.ping();
  }

  async close(): Promise<void> {
    this.listeners.clear();
    this.pub.disconnect();
    this.sub.disconnect();
  }

  publishTask(taskId: string, news: TaskNews): void {
    const body = news.kind === "transition"
      ? { kind: news.kind, transition: TaskTransition.toJSON(news.transition) }
      : { kind: news.kind, update: TaskProgressUpdate.toJSON(news.update) };
    this.publish(TASK + taskId, body);
  }

  publishWorker(workerId: string, order: WorkerOrder): void {
    this.publish(WORKER + workerId, order.kind === "cancel" ? { kind: order.kind, cancel: TaskCancellation.toJSON(order.cancel) } : order);
  }

  /** Tells every replica that `capability` has work waiting, at most every {@link WORK_NEWS_MS} per capability. */
  publishWork(capability: string): void {
    const now = Date.now();
    if (now - (this.workAnnounced.get(capability) ?? 0) < WORK_NEWS_MS) return;
    this.workAnnounced.set(capability, now);
    this.publish(WORK, { capability });
  }

  /** Follows one task's news; returns the unsubscribe. */
  onTask(taskId: string, listener: (news: TaskNews) => void): () => void {
    return this.listen(TASK + taskId, (body) => {
      const b = body as { kind: string; transition?: unknown; update?: unknown };
      if (b.kind === "transition") listener({ kind: "transition", transition: TaskTransition.fromJSON(b.transition) });
      else if (b.kind === "progress") listener({ kind: "progress", update: TaskProgressUpdate.fromJSON(b.update) });
    });
  }

  /** Follows orders for one worker; returns the unsubscribe. */
  onWorker(workerId: string, listener: (order: WorkerOrder) => void): () => void {
    return this.listen(WORKER + workerId, (body) => {
      const b = body as { kind: string; cancel?: unknown; sessionId?: string };
      if (b.kind === "cancel") listener({ kind: "cancel", cancel: TaskCancellation.fromJSON(b.cancel) });
      else if (b.kind === "replaced" && typeof b.sessionId === "string") listener({ kind: "replaced", sessionId: b.sessionId });
    });
  }

  /** Follows "work is due" news; returns the unsubscribe. */
  onWork(listener: (capability: string) => void): () => void {
    return this.listen(WORK, (body) => {
      const capability = (body as { capability?: unknown }).capability;
      if (typeof capability === "string") listener(capability);
    });
  }

  private publish(channel: string, body: unknown): void {
    if (this.pub.status !== "ready") return;
    this.pub.publish(channel, JSON.stringify(body)).catch((error: Error) => this.warn(error));
  }

  private listen(channel: string, handle: (body: unknown) => void): () => void {
    let set = this.listeners.get(channel);
    if (!set) {
      set = new Set();
      this.listeners.set(channel, set);
      this.sub.subscribe(channel).catch((error: Error) => this.warn(error));
    }
    const listener = (payload: string): void => {
      try {
        handle(JSON.parse(payload));
      } catch (error) {
        this.log.warn({ err: error, channel }, "dropped a malformed bus message");
      }
    };
    set.add(listener);
    return () => {
      const current = this.listeners.get(channel);
      if (!current?.delete(listener) || current.size > 0) return;
      this.listeners.delete(channel);
      this.sub.unsubscribe(channel).catch((error: Error) => this.warn(error));
    };
  }

  /** Logs a Redis problem at most every 10 s. */
  private warn(error: Error): void {
    if (Date.now() - this.lastError < 10_000) return;
    this.lastError = Date.now();
    this.log.warn({ err: error }, "redis: the coordinators' bus is degraded (the ledger is polled instead)");
  }
}
