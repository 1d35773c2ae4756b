import pg from "pg";
import type { Logger } from "pino";
import type { ChangeRow } from "./sql/entries.js";
import type { ConfigStore } from "./store.js";

/** Receives the committed changes, in revision order, as the hub learns of them. */
export type ChangeListener = (changes: readonly ChangeRow[]) => void;

/** Options of a {@link WatchHub}. */
export interface WatchHubOptions {
  /** The database, for the dedicated LISTEN connection. */
  readonly url: string;
  readonly store: ConfigStore;
  readonly logger: Logger;
  /** Longest wait between reconnect attempts of the LISTEN connection, in ms. @default 5000 */
  readonly maxBackoffMs?: number;
}

/** `idle` → `running` → `stopped`. */
export type WatchHubState = "idle" | "running" | "stopped";

/**
 * One per replica: LISTENs on `taskmesh_config` with one connection, and on
 * each notification reads the changes after the last revision it has seen
 * (one query for all watchers, whichever replica wrote them) and hands them
 * to every listener. After a lost connection it reconnects and catches up
 * from the same revision, so no change is skipped.
 */
export class WatchHub {
  private readonly listeners = new Set<ChangeListener>();
  private client: pg.Client | undefined;
  private last = 0n;
  private fetching: Promise<void> | undefined;
  private again = false;
  private state: WatchHubState = "idle";
  private reconnectTimer: NodeJS.Timeout | undefined;
  private failures = 0;

  constructor(private readonly options: WatchHubOptions) {}

  /** The last revision handed to listeners. */
  get revision(): bigint {
    return this.last;
  }

  /** Connects and starts listening; the hub starts from the current store revision. */
  async start(): Promise<void> {
    if (this.state !== "idle") throw new Error(`WatchHub.start in state ${this.state}`);
    this.last = await this.options.store.revision();
    this.state = "running";
    await this.connect();
  }

  /** Adds a listener; returns the function that removes it. */
  subscribe(listener: ChangeListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Closes the LISTEN connection; listeners get nothing more. */
  async stop(): Promise<void> {
    if (this.state === "stopped") return;
    this.state = "stopped";
    clearTimeout(this.reconnectTimer);
    this.listeners.clear();
    const client = this.client;
    this.client = undefined;
    await client?.end().catch(() => undefined);
  }

  private async connect(): Promise<void> {
    const client = new pg.Client({ connectionString: this.options.url, application_name: "config-watch-hub" });
    client.on("notification", () => this.poke());
    client.on("error", (error) => this.lost(client, error));
    client.on("end", () => this.lost(client, new Error("connection ended")));
    try {
      await client.connect();
      await client.query("LISTEN taskmesh_config");
    } catch (error) {
      this.lost(client, error);
      return;
    }
    if (this.state !== "running") {
      await client.end().catch(() => undefined);
      return;
    }
    this.client = client;
    this.failures = 0;
    this.poke(); // catch up on whatever committed while we were not listening
  }

  private lost(client: pg.Client, error: unknown): void {
    if (this.state !== "running" || (this.client !== undefined && this.client !== client) || this.reconnectTimer) return;
    this.client = undefined;
    client.removeAllListeners();
    client.on("error", () => undefined);
    void client.end().catch(() => undefined);
    const delay = Math.min(this.options.maxBackoffMs ?? 5000, 100 * 2 ** this.failures++) * (0.5 + Math.random() / 2);
    this.options.logger.warn({ err: error, retryInMs: Math.round(delay) }, "config LISTEN connection lost; reconnecting");
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      void this.connect();
    }, delay);
  }

  /** Schedules a read of new changes, coalescing notifications that arrive while one runs. */
  private poke(): void {
    if (this.fetching) {
      this.again = true;
      return;
    }
    this.fetching = this.fetch().finally(() => {
      this.fetching = undefined;
      if (this.again && this.state === "running") {
        this.again = false;
        this.poke();
      }
    });
  }

  private async fetch(): Promise<void> {
    try {
      for (;;) {
        const changes = await this.options.store.changesSince(this.last, "/", 1000);
        if (changes.length === 0 || this.state !== "running") return;
        this.last = BigInt(changes[changes.length - 1]!.revision);
        for (const listener of this.listeners) listener(changes);
        if (changes.length < 1000) return;
      }
    } catch (error) {
      this.options.logger.warn({ err: error }, "reading config changes failed; retrying on the next notification");
      this.again = true;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}
