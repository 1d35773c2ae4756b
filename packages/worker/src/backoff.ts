/** Options of {@link backoffDelay}; all in ms. */
export interface BackoffOptions {
  /** The first retry's delay. @default 200 */
  readonly initialMs?: number;
  /** The longest delay. @default 10000 */
  readonly maxMs?: number;
  /** Growth per failure. @default 2 */
  readonly multiplier?: number;
  /** Fraction of the delay randomized, 0..1 ("equal jitter" spread either side). @default 0.2 */
  readonly jitter?: number;
}

/** The delay before reconnect number `failures` (1-based): exponential, capped, with jitter so a fleet does not reconnect in step. */
export function backoffDelay(failures: number, options: BackoffOptions = {}, random: () => number = Math.random): number {
  const initial = options.initialMs ?? 200;
  const max = options.maxMs ?? 10_000;
  const jitter = Math.min(1, Math.max(0, options.jitter ?? 0.2));
  const base = Math.min(max, initial * (options.multiplier ?? 2) ** Math.max(0, failures - 1));
  return Math.max(0, Math.round(base * (1 - jitter + 2 * jitter * random())));
}
