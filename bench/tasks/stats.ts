/**
 * The `p`-th percentile (0–100) of `values` by the nearest-rank method: the
 * smallest value with at least p% of the values at or below it. Throws on an
 * empty list. `values` is not modified.
 */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) throw new RangeError("percentile of no values");
  if (!(p >= 0 && p <= 100)) throw new RangeError(`percentile ${p} is outside 0–100`);
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[rank - 1]!;
}

/** p50, p99 and max of latencies in ms, rounded to 0.01 ms. */
export function summarize(latenciesMs: readonly number[]): { p50Ms: number; p99Ms: number; maxMs: number } {
  const round = (ms: number): number => Math.round(ms * 100) / 100;
  return {
    p50Ms: round(percentile(latenciesMs, 50)),
    p99Ms: round(percentile(latenciesMs, 99)),
    maxMs: round(percentile(latenciesMs, 100)),
  };
}

/**
 * p50 of the first and of the last third of a steady run's latencies, given
 * in submit order: a run that keeps up has about the same in both; one that
 * falls behind has a last third that waits longer and longer.
 */
export function thirds(latenciesInSubmitOrder: readonly number[]): { firstThirdP50Ms: number; lastThirdP50Ms: number } {
  const third = Math.max(1, Math.floor(latenciesInSubmitOrder.length / 3));
  const round = (ms: number): number => Math.round(ms * 100) / 100;
  return {
    firstThirdP50Ms: round(percentile(latenciesInSubmitOrder.slice(0, third), 50)),
    lastThirdP50Ms: round(percentile(latenciesInSubmitOrder.slice(-third), 50)),
  };
}
