import pRetry from "p-retry";
import type { Logger } from "pino";

/**
 * Retries `step` (connect, migrate, ...) with capped exponential backoff and
 * jitter until it succeeds or `signal` aborts, logging each failure: a
 * service waits for its dependencies instead of crashing while they start.
 */
export function untilReady<T>(what: string, step: () => Promise<T>, signal: AbortSignal, log: Logger): Promise<T> {
  return pRetry(step, {
    retries: Number.POSITIVE_INFINITY,
    minTimeout: 100,
    maxTimeout: 5000,
    factor: 2,
    randomize: true,
    signal,
    onFailedAttempt: ({ error, attemptNumber, retryDelay }) => {
      log.warn({ err: error, attempt: attemptNumber, retryInMs: retryDelay }, `${what} not ready yet`);
    },
  });
}
