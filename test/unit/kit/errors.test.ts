import { Metadata, type ServiceError } from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import {
  Code, MeshError, STATUS_DETAILS_KEY, exhausted, fromServiceError, invalidArgument, notFound, toStatusObject, unavailable,
} from "@taskmesh/kit";

/** What a grpc-js client receives for a status the server sent. */
function received(error: MeshError): ServiceError {
  const status = toStatusObject(error);
  return Object.assign(new Error(`${status.code} ${status.details}`), { code: status.code!, details: status.details!, metadata: status.metadata! });
}

describe("MeshError stacks", () => {
  const frames = (e: Error): string[] => (e.stack ?? "").split("\n").filter((l) => l.trimStart().startsWith("at "));

  it("an answer to the caller's request carries no stack; a failure keeps its stack", () => {
    expect(frames(invalidArgument([{ field: "id", description: "bad" }]))).toEqual([]);
    expect(frames(notFound("RES_TASK_NOT_FOUND", "no task"))).toEqual([]);
    expect(frames(exhausted("RATE_LIMITED", "slow down", 100))).toEqual([]);
    expect(frames(unavailable("EXT_DEPENDENCY_UNAVAILABLE", "down")).length).toBeGreaterThan(0);
    expect(frames(new MeshError({ code: Code.INTERNAL, reason: "SYS_INTERNAL", message: "bug" })).length).toBeGreaterThan(0);
    expect(invalidArgument([{ field: "id", description: "bad" }]).stack).toContain("invalid id: bad");
  });

  it("leaves the process's own stack depth as it was", () => {
    const before = Error.stackTraceLimit;
    notFound("RES_TASK_NOT_FOUND", "no task");
    expect(Error.stackTraceLimit).toBe(before);
    expect(frames(new Error("plain")).length).toBeGreaterThan(0);
  });
});

describe("MeshError.from", () => {
  it("keeps a MeshError as it is", () => {
    const e = notFound("RES_KEY_NOT_FOUND", "no key /a");
    expect(MeshError.from(e)).toBe(e);
  });

  it("maps socket failures to UNAVAILABLE with a retry hint", () => {
    for (const code of ["ECONNREFUSED", "ECONNRESET", "EPIPE", "ETIMEDOUT"]) {
      const e = MeshError.from(Object.assign(new Error("connect failed"), { code }));
      expect([e.code, e.reason, e.retryAfterMs]).toEqual([Code.UNAVAILABLE, "EXT_DEPENDENCY_UNAVAILABLE", 1000]);
    }
  });

  it("maps Postgres failures by SQLSTATE", () => {
    expect(MeshError.from(Object.assign(new Error("could not serialize"), { code: "40001" }))).toMatchObject({ code: Code.ABORTED, reason: "SYS_SERIALIZATION_FAILURE" });
    expect(MeshError.from(Object.assign(new Error("deadlock"), { code: "40P01" }))).toMatchObject({ code: Code.ABORTED });
    expect(MeshError.from(Object.assign(new Error("terminating"), { code: "57P01" }))).toMatchObject({ code: Code.UNAVAILABLE, reason: "EXT_DATABASE_UNAVAILABLE" });
    expect(MeshError.from(Object.assign(new Error("conn"), { code: "08006" }))).toMatchObject({ code: Code.UNAVAILABLE });
    expect(MeshError.from(Object.assign(new Error("canceling statement"), { code: "57014" }))).toMatchObject({ code: Code.CANCELLED });
  });

  it("maps aborts and timeouts of an AbortSignal", () => {
    expect(MeshError.from(new DOMException("aborted", "AbortError"))).toMatchObject({ code: Code.CANCELLED, reason: "SYS_CANCELLED" });
    expect(MeshError.from(new DOMException("timed out", "TimeoutError"))).toMatchObject({ code: Code.DEADLINE_EXCEEDED, reason: "SYS_DEADLINE_EXCEEDED" });
  });

  it("turns anything else into INTERNAL without leaking its message, keeping it as the cause", () => {
    const secret = new Error("password=hunter2 in connection string");
    const e = MeshError.from(secret);
    expect([e.code, e.reason, e.message]).toEqual([Code.INTERNAL, "SYS_INTERNAL", "internal error"]);
    expect(e.cause).toBe(secret);
    expect(MeshError.from("a string").code).toBe(Code.INTERNAL);
    expect(MeshError.from(undefined).code).toBe(Code.INTERNAL);
  });
});

describe("MeshError", () => {
  it("refuses a reason without a class prefix or in the wrong case", () => {
    expect(() => new MeshError({ code: Code.INTERNAL, reason: "OOPS" as never, message: "x" })).toThrow(/bad error reason/);
    expect(() => new MeshError({ code: Code.INTERNAL, reason: "VAL_lower" as never, message: "x" })).toThrow(/bad error reason/);
  });

  it("is recognised by a symbol, not by its prototype (another copy of the module still matches)", () => {
    const e = notFound("RES_KEY_NOT_FOUND", "x");
    const lookalike = Object.create(Error.prototype) as object;
    expect(e instanceof MeshError).toBe(true);
    expect(lookalike instanceof MeshError).toBe(false);
    Object.defineProperty(lookalike, Symbol.for("taskmesh.MeshError"), { value: true });
    expect(lookalike instanceof MeshError).toBe(true);
  });

  it("names the one bad field in the message of an invalid argument", () => {
    expect(invalidArgument([{ field: "key", description: "is required" }]).message).toBe("invalid key: is required");
    expect(invalidArgument([{ field: "a", description: "x" }, { field: "b", description: "y" }]).message).toBe("invalid request: a, b");
  });
});

describe("the wire: google.rpc.Status in grpc-status-details-bin", () => {
  it("carries code, message, ErrorInfo, BadRequest and RetryInfo there and back", () => {
    const sent = new MeshError({
      code: Code.INVALID_ARGUMENT, reason: "VAL_INVALID_VALUE", message: "invalid value: too big",
      metadata: { limit: "65536" }, violations: [{ field: "value", description: "too big", reason: "VAL_TOO_BIG" }], retryAfterMs: 1500,
    });
    const status = toStatusObject(sent);
    expect(status.code).toBe(Code.INVALID_ARGUMENT);
    expect(status.details).toBe("invalid value: too big");
    expect(status.metadata!.get(STATUS_DETAILS_KEY)[0]).toBeInstanceOf(Buffer);
    const back = fromServiceError(received(sent));
    expect(back).toMatchObject({
      code: Code.INVALID_ARGUMENT, reason: "VAL_INVALID_VALUE", message: "invalid value: too big",
      metadata: { limit: "65536" }, violations: [{ field: "value", description: "too big", reason: "VAL_TOO_BIG" }], retryAfterMs: 1500,
    });
  });

  it("keeps RetryInfo of overload and unavailability", () => {
    expect(fromServiceError(received(exhausted("RATE_LIMITED", "slow down", 250))).retryAfterMs).toBe(250);
    expect(fromServiceError(received(unavailable("SYS_SHUTTING_DOWN", "bye", 100)))).toMatchObject({ code: Code.UNAVAILABLE, reason: "SYS_SHUTTING_DOWN", retryAfterMs: 100 });
  });

  it("still gives code and message for a server that sent no details", () => {
    const bare = Object.assign(new Error("14 UNAVAILABLE"), { code: Code.UNAVAILABLE, details: "connection refused", metadata: new Metadata() });
    expect(fromServiceError(bare)).toMatchObject({ code: Code.UNAVAILABLE, reason: "EXT_UPSTREAM_ERROR", message: "connection refused" });
  });
});
