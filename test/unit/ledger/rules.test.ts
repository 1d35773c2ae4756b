import { describe, expect, it } from "vitest";
import { Code, MeshError } from "@taskmesh/kit";
import { backoffMs, isUuidV7, parseCreate, uuidv7 } from "@taskmesh/ledger-service";
import { createRequest } from "../../integration/ledger/support.js";

describe("ledger rules", () => {
  const policy = { retry_initial_ms: 1000, retry_max_ms: 10_000, retry_multiplier: 2 };

  it("backs off exponentially up to the maximum, plus at most 10% jitter", () => {
    expect([1, 2, 3, 4, 5, 9].map((n) => backoffMs(policy, n, () => 0))).toEqual([1000, 2000, 4000, 8000, 10_000, 10_000]);
    expect(backoffMs(policy, 2, () => 0.999)).toBe(2200);
    expect(backoffMs({ ...policy, retry_initial_ms: 0 }, 3, () => 0.5)).toBe(0);
  });

  it("makes time-ordered UUIDv7 ids", () => {
    const a = uuidv7(1_700_000_000_000);
    const b = uuidv7(1_700_000_000_001);
    expect(isUuidV7(a) && isUuidV7(b)).toBe(true);
    expect(a < b).toBe(true);
  });

  it("applies retry defaults and refuses inconsistent retry policies", () => {
    const parsed = parseCreate({ ...createRequest(), retryPolicy: undefined });
    expect(parsed).toMatchObject({ retryInitialMs: 1000, retryMaxMs: 60_000, retryMultiplier: 2, timeoutMs: 60_000 });
    const bad = () => parseCreate(createRequest({
      retryPolicy: { maxAttempts: 7, initialBackoff: { seconds: 10n, nanos: 0 }, maxBackoff: { seconds: 5n, nanos: 0 }, multiplier: 11 },
    }));
    expect(bad).toThrow(MeshError);
    try {
      bad();
    } catch (e) {
      expect((e as MeshError).code).toBe(Code.INVALID_ARGUMENT);
      expect((e as MeshError).violations.map((v) => v.field)).toEqual(["retry_policy.max_attempts", "retry_policy.max_backoff", "retry_policy.multiplier"]);
    }
  });
});
