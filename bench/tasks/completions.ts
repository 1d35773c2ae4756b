import { performance } from "node:perf_hooks";

/**
 * Completion times of jobs as the in-process worker reports them, for the
 * submitter to wait on: by job id (steady runs) or by count (bursts). A job
 * may complete before its submit call has returned its id; that time is kept
 * until the submitter asks for it, while `keepUnclaimed` is on.
 */
export class CompletionLog {
  private readonly waiters = new Map<string, (at: number) => void>();
  private readonly unclaimed = new Map<string, number>();
  private counted = 0;
  private target: { count: number; resolve: () => void } | undefined;
  /** Keep completion times nobody waits for yet (on during steady runs, off during bursts). */
  keepUnclaimed = false;

  /** Records that job `id` completed now. */
  record(id: string): void {
    const at = performance.now();
    this.counted += 1;
    const waiter = this.waiters.get(id);
    if (waiter) {
      this.waiters.delete(id);
      waiter(at);
    } else if (this.keepUnclaimed) {
      this.unclaimed.set(id, at);
    }
    if (this.target && this.counted >= this.target.count) {
      const { resolve } = this.target;
      this.target = undefined;
      resolve();
    }
  }

  /** Resolves with the `performance.now()` time at which job `id` completed. */
  completionOf(id: string): Promise<number> {
    const at = this.unclaimed.get(id);
    if (at !== undefined) {
      this.unclaimed.delete(id);
      return Promise.resolve(at);
    }
    return new Promise((resolve) => this.waiters.set(id, resolve));
  }

  /** Resolves once `n` more jobs have completed than had when this was called. */
  next(n: number): Promise<void> {
    if (this.target) throw new Error("a count is already awaited");
    const count = this.counted + n;
    return new Promise((resolve) => {
      this.target = { count, resolve };
    });
  }

  /** Forgets every waiter and kept time (between runs). */
  reset(): void {
    this.waiters.clear();
    this.unclaimed.clear();
    this.target = undefined;
  }
}
