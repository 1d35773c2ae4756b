import { MeshError } from "@taskmesh/kit";

/** Options of a {@link Batcher}. */
export interface BatcherOptions {
  /** The most items in one call. */
  readonly maxBatch: number;
  /** The most calls in flight at once; items wait while all are busy. */
  readonly maxInFlight: number;
}

interface Waiting<T, R> {
  readonly item: T;
  readonly resolve: (result: R) => void;
  readonly reject: (error: unknown) => void;
}

/**
 * Groups single requests into batch calls without adding a wait: an item is
 * sent at once while fewer than `maxInFlight` calls are out; otherwise it
 * joins the next call, which leaves as soon as one returns. Under light load
 * every call carries one item (no added latency); under heavy load calls grow
 * up to `maxBatch`, and one commit serves many. `run` answers each item in
 * order, with its result or its own MeshError; a failed call fails its items.
 */
export class Batcher<T, R> {
  private readonly queue: Array<Waiting<T, R>> = [];
  private inFlight = 0;

  constructor(private readonly run: (items: T[]) => Promise<Array<R | MeshError>>, private readonly options: BatcherOptions) {}

  /** Resolves with the item's result, or rejects with its error. */
  submit(item: T): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      this.pump();
    });
  }

  private pump(): void {
    while (this.inFlight < this.options.maxInFlight && this.queue.length > 0) {
      const batch = this.queue.splice(0, this.options.maxBatch);
      this.inFlight++;
      this.run(batch.map((w) => w.item)).then(
        (results) => batch.forEach((w, i) => {
          const r = results[i];
          if (r instanceof MeshError) w.reject(r);
          else if (r === undefined) w.reject(new Error("a batch call answered fewer items than it was given"));
          else w.resolve(r);
        }),
        (error: unknown) => batch.forEach((w) => w.reject(error)),
      ).finally(() => {
        this.inFlight--;
        this.pump();
      });
    }
  }
}
