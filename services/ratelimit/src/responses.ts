import type { HeaderValue } from "@taskmesh/contracts/gen/envoy/config/core/v3/base";
import {
  RateLimitResponse_Code, type RateLimitResponse, type RateLimitResponse_DescriptorStatus,
} from "@taskmesh/contracts/gen/envoy/service/ratelimit/v3/rls";
import { Code, MeshError, STATUS_DETAILS_KEY, statusDetailsValue, toDuration } from "@taskmesh/kit";
import { PERIODS, type Limit } from "./limits.js";

/** How a refused request is described to the caller. */
export interface Refusal {
  /** The limit that refused it (the one that frees up last), absent when Redis was down (failure mode closed). */
  readonly limit?: Limit;
  /** The refused descriptor, as `key=value` pairs joined by `,`. */
  readonly descriptor?: string;
  /** When to retry, in ms. */
  readonly retryAfterMs: number;
}

/** A descriptor status without a limit (no limit applies, or Redis could not be asked). */
export function unlimitedStatus(): RateLimitResponse_DescriptorStatus {
  return { code: RateLimitResponse_Code.OK, currentLimit: undefined, limitRemaining: 0, durationUntilReset: undefined, quota: undefined };
}

/** A descriptor status under a limit: what Envoy turns into `x-ratelimit-limit/remaining/reset`. */
export function limitedStatus(limit: Limit, over: boolean, remaining: number, resetMs: number): RateLimitResponse_DescriptorStatus {
  return {
    code: over ? RateLimitResponse_Code.OVER_LIMIT : RateLimitResponse_Code.OK,
    currentLimit: { name: limit.name, requestsPerUnit: limit.requests, unit: PERIODS[limit.per].unit },
    limitRemaining: remaining,
    durationUntilReset: toDuration(resetMs),
    quota: undefined,
  };
}

/** The answer: OK, or OVER_LIMIT with the headers a caller behind Envoy gets (`retry-after`, and RetryInfo for gRPC). */
export function rateLimitResponse(statuses: RateLimitResponse_DescriptorStatus[], refusal: Refusal | undefined): RateLimitResponse {
  return {
    overallCode: refusal ? RateLimitResponse_Code.OVER_LIMIT : RateLimitResponse_Code.OK,
    statuses,
    responseHeadersToAdd: refusal ? refusalHeaders(refusal) : [],
    requestHeadersToAdd: [],
    rawBody: Buffer.alloc(0),
    dynamicMetadata: undefined,
    quota: undefined,
  };
}

/** The error a refused request stands for: RESOURCE_EXHAUSTED with ErrorInfo and RetryInfo. */
export function refusalError(refusal: Refusal): MeshError {
  const retryAfterMs = Math.max(0, refusal.retryAfterMs);
  const seconds = Math.max(1, Math.ceil(retryAfterMs / 1000));
  if (!refusal.limit) {
    return new MeshError({
      code: Code.RESOURCE_EXHAUSTED, reason: "RATE_LIMITER_UNAVAILABLE", retryAfterMs,
      message: `rate limits cannot be checked right now; retry in ${seconds} s`,
    });
  }
  const limit = `${refusal.limit.requests}/${refusal.limit.per}`;
  return new MeshError({
    code: Code.RESOURCE_EXHAUSTED, reason: "RATE_LIMITED", retryAfterMs,
    message: `rate limit "${refusal.limit.name}" exceeded (${refusal.limit.requests} per ${refusal.limit.per}); retry in ${seconds} s`,
    metadata: { name: refusal.limit.name, descriptor: refusal.descriptor ?? "", limit },
  });
}

function refusalHeaders(refusal: Refusal): HeaderValue[] {
  const header = (key: string, value: string): HeaderValue => ({ key, value, rawValue: Buffer.alloc(0) });
  return [
    header("retry-after", String(Math.max(1, Math.ceil(refusal.retryAfterMs / 1000)))),
    // gRPC binary headers: base64, unpadded.
    header(STATUS_DETAILS_KEY, statusDetailsValue(refusalError(refusal)).replace(/=+$/, "")),
  ];
}
