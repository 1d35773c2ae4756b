import { isReason } from "@taskmesh/contracts";
import { status as Code } from "@grpc/grpc-js";

export { Code };

/** The ErrorInfo domain of every error taskmesh raises. */
export const ERROR_DOMAIN = "taskmesh.dev";

/** Reason classes: the prefix of every ErrorInfo reason says who is at fault. */
export type ReasonClass = "AUTH" | "VAL" | "RES" | "SYS" | "EXT" | "RATE" | "BIZ";

/** An UPPER_SNAKE ErrorInfo reason with its class prefix, e.g. `VAL_INVALID_KEY`. */
export type Reason = `${ReasonClass}_${string}`;

/** One bad field of a request, as `google.rpc.BadRequest.FieldViolation`. */
export interface FieldViolation {
  /** Path of the field in the request, proto field names joined by dots. */
  readonly field: string;
  /** What is wrong with it, for the caller. */
  readonly description: string;
  /** An UPPER_SNAKE reason for this one field (optional). */
  readonly reason?: string;
}

/** What a {@link MeshError} is made of. */
export interface MeshErrorInit {
  /** The gRPC status code. */
  readonly code: Code;
  /** ErrorInfo reason, UPPER_SNAKE with its class prefix. */
  readonly reason: Reason;
  /** The message the caller sees. */
  readonly message: string;
  /** ErrorInfo metadata: small string facts a caller can act on. */
  readonly metadata?: Readonly<Record<string, string>>;
  /** BadRequest field violations, for invalid input. */
  readonly violations?: readonly FieldViolation[];
  /** RetryInfo: how long to wait before retrying, in milliseconds. */
  readonly retryAfterMs?: number;
  /** The underlying error: logged, never sent to the caller. */
  readonly cause?: unknown;
}

const brand = Symbol.for("taskmesh.MeshError");

/**
 * Codes that answer a caller's own request (bad input, a missing or
 * existing resource, no permission, a limit): their errors are answers, not
 * failures, so they carry no stack. Capturing one is most of what an error
 * reply costs the server (about 6 µs of the 7 each such error takes), and
 * nothing logs it: the server logs only INTERNAL and UNKNOWN with a stack.
 */
const ANSWER_CODES: ReadonlySet<Code> = new Set([
  Code.INVALID_ARGUMENT, Code.NOT_FOUND, Code.ALREADY_EXISTS, Code.FAILED_PRECONDITION, Code.OUT_OF_RANGE,
  Code.PERMISSION_DENIED, Code.UNAUTHENTICATED, Code.RESOURCE_EXHAUSTED,
]);

/**
 * The one error type of taskmesh: a gRPC status code, a message for the
 * caller, and the design's rich details (ErrorInfo, BadRequest, RetryInfo).
 * Handlers throw it; the kit maps it to the wire in one place.
 */
export class MeshError extends Error {
  override readonly name = "MeshError";
  readonly code: Code;
  readonly reason: Reason;
  readonly metadata: Readonly<Record<string, string>>;
  readonly violations: readonly FieldViolation[];
  readonly retryAfterMs: number | undefined;

  constructor(init: MeshErrorInit) {
    const stackFrames = Error.stackTraceLimit;
    if (ANSWER_CODES.has(init.code)) Error.stackTraceLimit = 0;
    super(init.message, init.cause === undefined ? undefined : { cause: init.cause });
    Error.stackTraceLimit = stackFrames;
    if (!isReason(init.reason)) throw new TypeError(`bad error reason ${JSON.stringify(init.reason)}`);
    this.code = init.code;
    this.reason = init.reason;
    this.metadata = Object.freeze({ ...init.metadata });
    this.violations = Object.freeze([...(init.violations ?? [])]);
    this.retryAfterMs = init.retryAfterMs;
    Object.defineProperty(this, brand, { value: true });
  }

  /** True for a MeshError from any copy of this module (symbol-based, not prototype-based). */
  static override [Symbol.hasInstance](value: unknown): boolean {
    return typeof value === "object" && value !== null && (value as Record<symbol, unknown>)[brand] === true;
  }

  /**
   * Turns anything thrown into a MeshError: a MeshError stays as it is, known
   * failures map per {@link classify}, and anything else becomes INTERNAL
   * with the original kept only as `cause`.
   */
  static from(error: unknown): MeshError {
    if (error instanceof MeshError) return error;
    return classify(error) ?? internal(error);
  }
}

/** INVALID_ARGUMENT with BadRequest field violations; the reason defaults to `VAL_INVALID_ARGUMENT`. */
export function invalidArgument(violations: readonly FieldViolation[], reason: Reason = "VAL_INVALID_ARGUMENT"): MeshError {
  const first = violations[0];
  const message = violations.length === 1 && first
    ? `invalid ${first.field}: ${first.description}`
    : `invalid request: ${violations.map((v) => v.field).join(", ")}`;
  return new MeshError({ code: Code.INVALID_ARGUMENT, reason, message, violations });
}

/** NOT_FOUND for a missing resource. */
export function notFound(reason: Reason, message: string, metadata?: Record<string, string>): MeshError {
  return new MeshError({ code: Code.NOT_FOUND, reason, message, ...(metadata ? { metadata } : {}) });
}

/** RESOURCE_EXHAUSTED with RetryInfo, for overload and limits. */
export function exhausted(reason: Reason, message: string, retryAfterMs: number): MeshError {
  return new MeshError({ code: Code.RESOURCE_EXHAUSTED, reason, message, retryAfterMs });
}

/** UNAVAILABLE with RetryInfo, e.g. while a process drains or a dependency is down. */
export function unavailable(reason: Reason, message: string, retryAfterMs = 1000, cause?: unknown): MeshError {
  return new MeshError({ code: Code.UNAVAILABLE, reason, message, retryAfterMs, cause });
}

function internal(cause: unknown): MeshError {
  return new MeshError({ code: Code.INTERNAL, reason: "SYS_INTERNAL", message: "internal error", cause });
}

/**
 * Known failures and the status each maps to. Socket-level errors mean the
 * other side is unreachable or went away, which a retry may fix: UNAVAILABLE.
 * (Errors of downstream gRPC calls arrive as MeshError already: the kit's
 * clients decode them.)
 *
 * | failure                                              | code              | reason                  |
 * |------------------------------------------------------|-------------------|-------------------------|
 * | ECONNREFUSED, ECONNRESET, EPIPE, EHOSTUNREACH, ENOTFOUND, ETIMEDOUT, EAI_AGAIN | UNAVAILABLE | EXT_DEPENDENCY_UNAVAILABLE |
 * | Postgres 57P01/57P02/57P03 (admin shutdown, cannot connect now), 08xxx (connection) | UNAVAILABLE | EXT_DATABASE_UNAVAILABLE |
 * | Postgres 40001/40P01 (serialization failure, deadlock) | ABORTED          | SYS_SERIALIZATION_FAILURE   |
 * | Postgres 57014 (statement cancelled)                 | CANCELLED         | SYS_CANCELLED           |
 * | AbortError / TimeoutError from an AbortSignal        | CANCELLED / DEADLINE_EXCEEDED | SYS_CANCELLED / SYS_DEADLINE_EXCEEDED |
 */
export function classify(error: unknown): MeshError | undefined {
  if (typeof error !== "object" || error === null) return undefined;
  const e = error as { code?: unknown; name?: unknown };
  if (e.name === "AbortError") return new MeshError({ code: Code.CANCELLED, reason: "SYS_CANCELLED", message: "the call was cancelled", cause: error });
  if (e.name === "TimeoutError") return new MeshError({ code: Code.DEADLINE_EXCEEDED, reason: "SYS_DEADLINE_EXCEEDED", message: "the deadline was exceeded", cause: error });
  if (typeof e.code === "string") {
    if (SOCKET_CODES.has(e.code)) return unavailable("EXT_DEPENDENCY_UNAVAILABLE", "a dependency is unreachable", 1000, error);
    if (/^08/.test(e.code) || ["57P01", "57P02", "57P03", "53300"].includes(e.code)) {
      return unavailable("EXT_DATABASE_UNAVAILABLE", "the database is unavailable", 1000, error);
    }
    if (e.code === "40001" || e.code === "40P01") {
      return new MeshError({ code: Code.ABORTED, reason: "SYS_SERIALIZATION_FAILURE", message: "a concurrent update conflicted; retry", retryAfterMs: 50, cause: error });
    }
    if (e.code === "57014") return new MeshError({ code: Code.CANCELLED, reason: "SYS_CANCELLED", message: "the statement was cancelled", cause: error });
  }
  return undefined;
}

const SOCKET_CODES = new Set(["ECONNREFUSED", "ECONNRESET", "EPIPE", "EHOSTUNREACH", "ENETUNREACH", "ENOTFOUND", "ETIMEDOUT", "EAI_AGAIN"]);
