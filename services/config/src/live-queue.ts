import type { ChangeRow } from "./sql/entries.js";

/** What {@link LiveQueue.next} yields: changes, or word that some were dropped and must be re-read. */
export type LiveBatch = { readonly changes: ChangeRow[] } | { readonly overflowed: true };

/**
 * The buffer between the watch hub and one watcher: keeps the changes under
 * the watcher's prefix until it sends them. Bounded: a watcher that falls
 * more than `capacity` changes behind gets `overflowed` instead, and re-reads
 * from the change log, so a slow client costs no memory and loses nothing.
 */
export class LiveQueue {
  private buffer: ChangeRow[] = [];
  private overflowed = false;
  private wake: (() => void) | undefined;

  constructor(private readonly prefix: string, private readonly capacity = 10_000) {}

  /** Takes the changes the hub delivers (a ChangeListener). */
  readonly push = (changes: readonly ChangeRow[]): void => {
    if (this.overflowed) return;
    for (const change of changes) if (change.key.startsWith(this.prefix)) this.buffer.push(change);
    if (this.buffer.length > this.capacity) {
      this.buffer = [];
      this.overflowed = true;
    }
    if (this.buffer.length > 0 || this.overflowed) {
      this.wake?.();
      this.wake = undefined;
    }
  };

  /** Waits for the next changes (or an overflow); rejects with the signal's reason when it aborts. */
  async next(signal: AbortSignal): Promise<LiveBatch> {
    while (this.buffer.length === 0 && !this.overflowed) {
      signal.throwIfAborted();
      await new Promise<void>((resolve, reject) => {
        const onAbort = (): void => reject(signal.reason);
        this.wake = () => {
          signal.removeEventListener("abort", onAbort);
          resolve();
        };
        signal.addEventListener("abort", onAbort, { once: true });
      });
    }
    if (this.overflowed) {
      this.overflowed = false;
      return { overflowed: true };
    }
    const changes = this.buffer;
    this.buffer = [];
    return { changes };
  }
}
