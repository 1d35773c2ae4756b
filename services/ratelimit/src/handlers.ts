import type { RateLimitServiceService } from "@taskmesh/contracts/gen/envoy/service/ratelimit/v3/rls";
import { invalidArgument, type FieldViolation, type ServiceHandlers } from "@taskmesh/kit";
import { counterKey, type HitCounter, type WindowCheck } from "./counter.js";
import type { FailureMode } from "./failure-mode.js";
import type { Limit, LimitSet } from "./limits.js";
import { limitedStatus, rateLimitResponse, unlimitedStatus, type Refusal } from "./responses.js";

/** What the handlers read: the live settings and the counters. */
export interface RateLimitDeps {
  /** The limits in force now. */
  readonly limits: () => LimitSet;
  /** What to answer while the counters cannot be reached. */
  readonly failureMode: () => FailureMode;
  readonly counter: HitCounter;
  /** How long a caller refused while Redis is down (failure mode closed) should wait, in ms. @default 1000 */
  readonly unavailableRetryMs?: number;
}

/** Most descriptors one request may carry. */
export const MAX_DESCRIPTORS = 64;

/** `envoy.service.ratelimit.v3.RateLimitService`: checks and counts one request against the configured limits. */
export function rateLimitHandlers(deps: RateLimitDeps): ServiceHandlers<typeof RateLimitServiceService> {
  return {
    async shouldRateLimit(request, ctx) {
      const violations: FieldViolation[] = [];
      if (!request.domain) violations.push({ field: "domain", description: "must not be empty" });
      if (request.descriptors.length === 0) violations.push({ field: "descriptors", description: "must not be empty" });
      if (request.descriptors.length > MAX_DESCRIPTORS) violations.push({ field: "descriptors", description: `at most ${MAX_DESCRIPTORS}` });
      request.descriptors.forEach((d, i) => {
        if (d.entries.length === 0) violations.push({ field: `descriptors[${i}].entries`, description: "must not be empty" });
        d.entries.forEach((e, j) => {
          if (!e.key) violations.push({ field: `descriptors[${i}].entries[${j}].key`, description: "must not be empty" });
        });
      });
      if (violations.length > 0) throw invalidArgument(violations);

      // Envoy sends 0 when the request adds the default single hit.
      const hits = request.hitsAddend || 1;
      const limits = deps.limits();
      const matched = request.descriptors.map((d) => limits.match(d.entries));
      const checks: Array<WindowCheck & { index: number; limit: Limit }> = [];
      matched.forEach((limit, index) => {
        if (limit) checks.push({ index, limit, key: counterKey(request.domain, limit.name, request.descriptors[index]!.entries), requests: limit.requests, windowMs: limit.windowMs });
      });
      const statuses = request.descriptors.map(() => unlimitedStatus());
      if (checks.length === 0) return rateLimitResponse(statuses, undefined);

      let outcome;
      try {
        outcome = await deps.counter.hit(request.domain, checks, hits);
      } catch (error) {
        const mode = deps.failureMode();
        ctx.log.debug({ err: error, failureMode: mode }, "counters unavailable");
        if (mode === "open") return rateLimitResponse(statuses, undefined);
        for (const check of checks) statuses[check.index] = limitedStatus(check.limit, true, 0, deps.unavailableRetryMs ?? 1000);
        return rateLimitResponse(statuses, { retryAfterMs: deps.unavailableRetryMs ?? 1000 });
      }

      let refusal: Refusal | undefined;
      checks.forEach((check, i) => {
        const result = outcome.results[i]!;
        statuses[check.index] = limitedStatus(check.limit, result.over, result.remaining, result.resetMs);
        // The request fits once every limit it broke has room: the latest of them says when.
        if (result.over && (!refusal || result.resetMs > refusal.retryAfterMs)) {
          const descriptor = request.descriptors[check.index]!.entries.map((e) => `${e.key}=${e.value}`).join(",");
          refusal = { limit: check.limit, descriptor, retryAfterMs: result.resetMs };
        }
      });
      return rateLimitResponse(statuses, outcome.admitted ? undefined : refusal);
    },
  };
}
