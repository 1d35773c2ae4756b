import type { Logger } from "@taskmesh/kit";
import type { SigningKeys } from "./signing-keys.js";

/** The scheduler's lifecycle. */
export type KeySchedulerState = "idle" | "running" | "stopped";

/**
 * Sweeps the signing keys every `intervalMs`: records due activations and
 * retirements and rotates on schedule (see {@link SigningKeys.sweep}). Safe
 * on every replica: the sweep skips while another one holds the lock.
 */
export class KeyScheduler {
  #state: KeySchedulerState = "idle";
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  readonly #keys: SigningKeys;
  readonly #intervalMs: number;
  readonly #log: Logger;

  constructor(keys: SigningKeys, intervalMs: number, log: Logger) {
    this.#keys = keys;
    this.#intervalMs = intervalMs;
    this.#log = log.child({ component: "key-scheduler" });
  }

  get state(): KeySchedulerState {
    return this.#state;
  }

  /** Starts sweeping (the first sweep now). */
  start(): void {
    if (this.#state !== "idle") throw new Error(`key scheduler is ${this.#state}`);
    this.#state = "running";
    this.#tick();
  }

  /** Stops sweeping and waits for a sweep in progress. */
  async stop(): Promise<void> {
    this.#state = "stopped";
    clearTimeout(this.#timer);
    await this.#running;
  }

  #tick(): void {
    if (this.#state !== "running") return;
    this.#running = this.#keys.sweep()
      .catch((error: unknown) => this.#log.warn({ err: error }, "signing key sweep failed; retried at the next one"))
      .finally(() => {
        this.#running = undefined;
        if (this.#state === "running") this.#timer = setTimeout(() => this.#tick(), this.#intervalMs);
      });
  }
}
