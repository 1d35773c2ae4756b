import { describe, expect, it } from "vitest";
import { SubmitTaskRequest } from "@taskmesh/contracts/gen/taskmesh/coordinator/v1/task_service";
import { Code, MeshError } from "@taskmesh/kit";
import { canonicalJson, parseSubmit, requestHash } from "../../../services/coordinator/src/validation.js";
import { checkRegistration } from "../../../services/coordinator/src/worker-registration.js";

const submit = (over: Partial<SubmitTaskRequest> = {}): SubmitTaskRequest => ({
  capability: "echo", input: { text: "hi" }, idempotencyKey: "", maxAttempts: undefined, timeout: undefined, priority: 0, labels: {}, retryPolicy: undefined, ...over,
});
const known = () => true;
const thrown = (f: () => unknown): MeshError => {
  try {
    f();
  } catch (error) {
    return MeshError.from(error);
  }
  throw new Error("expected a throw");
};

describe("coordinator submit validation", () => {
  it("fills the contract's defaults", () => {
    const v = parseSubmit(submit(), known);
    expect([v.maxAttempts, v.timeoutMs, v.priority, v.retryPolicy?.maxAttempts]).toEqual([3, 300_000, 0, 3]);
    expect(parseSubmit(submit({ retryPolicy: { maxAttempts: 7, initialBackoff: undefined, maxBackoff: undefined, multiplier: 0 } }), known).maxAttempts).toBe(7);
  });

  it("fingerprints the request without its key, independent of key order in the input", () => {
    const a = requestHash(submit({ input: { a: 1, b: { c: 2, d: 3 } }, idempotencyKey: "k1" }));
    const b = requestHash(submit({ input: { b: { d: 3, c: 2 }, a: 1 }, idempotencyKey: "k2" }));
    const c = requestHash(submit({ input: { a: 1, b: { c: 2, d: 4 } } }));
    expect(a).toMatch(/^[0-9a-f]{64}$/);
    expect(a).toBe(b);
    expect(a).not.toBe(c);
    expect(requestHash(submit({ priority: 1 }))).not.toBe(requestHash(submit()));
    expect(canonicalJson({ b: [{ y: 1, x: 2 }], a: null })).toBe('{"a":null,"b":[{"x":2,"y":1}]}');
  });

  it("names every bad field, with the contract's reasons", () => {
    const unknown = thrown(() => parseSubmit(submit({ capability: "teleport" }), () => false));
    expect([unknown.code, unknown.reason, unknown.violations.map((v) => v.field)]).toEqual([Code.INVALID_ARGUMENT, "VAL_UNKNOWN_CAPABILITY", ["capability"]]);
    const big = thrown(() => parseSubmit(submit({ input: { x: "y".repeat(256 * 1024) } }), known));
    expect(big.reason).toBe("VAL_INPUT_TOO_LARGE");
    const many = thrown(() => parseSubmit(submit({
      maxAttempts: 3, retryPolicy: { maxAttempts: 4, initialBackoff: { seconds: 7200n, nanos: 0 }, maxBackoff: undefined, multiplier: 0.5 },
      idempotencyKey: "x".repeat(129), labels: Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`k${i}`, "v"])),
    }), known));
    expect(many.violations.map((v) => v.field)).toEqual([
      "idempotency_key", "retry_policy.max_attempts", "labels", "retry_policy.initial_backoff", "retry_policy.multiplier",
    ]);
  });
});

describe("worker registration checks", () => {
  const info = { workerId: "w1", name: "w1", capabilities: [{ name: "echo", maxConcurrency: 2, description: "" }], maxConcurrency: 4, labels: {}, version: "1", weight: 1 };

  it("accepts a well-formed registration", () => {
    expect(checkRegistration(info)).toBe(info);
  });

  it("refuses a malformed one with INVALID_ARGUMENT (VAL_INVALID_REGISTRATION) and one violation per field", () => {
    const e = thrown(() => checkRegistration({
      ...info, workerId: "bad id", maxConcurrency: 0, weight: 101,
      capabilities: [{ name: "echo", maxConcurrency: 1, description: "" }, { name: "echo", maxConcurrency: 2000, description: "" }],
    }));
    expect([e.code, e.reason]).toEqual([Code.INVALID_ARGUMENT, "VAL_INVALID_REGISTRATION"]);
    expect(e.violations.map((v) => v.field)).toEqual([
      "register.worker.worker_id", "register.worker.capabilities[1].name", "register.worker.capabilities[1].max_concurrency",
      "register.worker.max_concurrency", "register.worker.weight",
    ]);
    expect(thrown(() => checkRegistration(undefined)).violations.map((v) => v.field)).toEqual(["register.worker"]);
  });
});
