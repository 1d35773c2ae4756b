/** How often a consumer waiting on its subscriber heartbeats, in ms (well inside the 10 s session timeout). */
export const HEARTBEAT_EVERY_MS = 1000;

/**
 * A wake-up for a consumer waiting for room under `max_in_flight`: `wait`
 * resolves when `free` is called or after `HEARTBEAT_EVERY_MS`, so the
 * waiter can heartbeat and look again.
 */
export class Room {
  #wake: (() => void) | undefined;

  /** Resolves at the next `free`, or after a heartbeat interval. */
  wait(): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, HEARTBEAT_EVERY_MS);
      const self = this;
      function done(): void {
        clearTimeout(timer);
        if (self.#wake === done) self.#wake = undefined;
        resolve();
      }
      this.#wake = done;
    });
  }

  /** Wakes the waiter: a delivery was settled (or the subscription is ending). */
  free(): void {
    this.#wake?.();
  }
}

/**
 * Waits for `work`, heartbeating every `HEARTBEAT_EVERY_MS` meanwhile: a
 * subscriber that reads slowly must not cost its group a rebalance.
 */
export async function withHeartbeats(work: Promise<void>, heartbeat: () => Promise<void>): Promise<void> {
  let finished = false;
  const done = work.finally(() => {
    finished = true;
  });
  while (!finished) {
    await Promise.race([done, new Promise((r) => setTimeout(r, HEARTBEAT_EVERY_MS))]);
    if (!finished) await heartbeat();
  }
}
