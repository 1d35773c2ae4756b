/** Config key of what to answer while Redis cannot be reached: the JSON string `"open"` or `"closed"`. */
export const FAILURE_MODE_KEY = "/ratelimit/failure_mode";

/** While Redis is down: `open` admits every request, `closed` refuses every request that a limit applies to. */
export const FAILURE_MODES = ["open", "closed"] as const;

/** What to answer while Redis cannot be reached. */
export type FailureMode = (typeof FAILURE_MODES)[number];

/** Parses the value of {@link FAILURE_MODE_KEY}; throws on anything but `"open"` or `"closed"`. */
export function parseFailureMode(value: unknown): FailureMode {
  if (typeof value !== "string" || !(FAILURE_MODES as readonly string[]).includes(value)) {
    throw new Error(`${FAILURE_MODE_KEY} must be "open" or "closed", got ${JSON.stringify(value)}`);
  }
  return value as FailureMode;
}
