import { invalidArgument, type FieldViolation } from "@taskmesh/kit";

/** Longest key or prefix, in bytes. */
export const MAX_KEY_BYTES = 256;
/** Largest value, as JSON, in bytes. */
export const MAX_VALUE_BYTES = 64 * 1024;
/** Deepest nesting of a value. */
export const MAX_VALUE_DEPTH = 32;

const KEY = /^(\/[A-Za-z0-9._-]+)+$/;
const PREFIX = /^\/[A-Za-z0-9._\/-]*$/;

/** Puts a key in canonical form: with its leading `/` (HTTP routes drop it). */
function canonical(key: string): string {
  return key.startsWith("/") ? key : `/${key}`;
}

/** The problem with a key, or undefined when it is fine. */
function keyProblem(key: string): string | undefined {
  if (key === "" || key === "/") return "is required";
  if (Buffer.byteLength(key) > MAX_KEY_BYTES) return `is longer than ${MAX_KEY_BYTES} bytes`;
  if (!KEY.test(key)) return "must be /-separated segments of A-Z a-z 0-9 . _ - with no empty segment or trailing /";
  return undefined;
}

/** A valid canonical key, or INVALID_ARGUMENT (`VAL_INVALID_KEY`) with a violation on `field`. */
export function parseKey(raw: string, field = "key"): string {
  const key = canonical(raw);
  const problem = keyProblem(key);
  if (problem) throw invalidArgument([{ field, description: `${JSON.stringify(raw)} ${problem}` }], "VAL_INVALID_KEY");
  return key;
}

/** A valid prefix (`/` when empty), or INVALID_ARGUMENT (`VAL_INVALID_PREFIX`). */
export function parsePrefix(raw: string, field = "prefix"): string {
  const prefix = raw === "" ? "/" : raw;
  if (Buffer.byteLength(prefix) > MAX_KEY_BYTES || !PREFIX.test(prefix) || prefix.includes("//")) {
    throw invalidArgument([{ field, description: `${JSON.stringify(raw)} must start with / and use only A-Z a-z 0-9 . _ - / (at most ${MAX_KEY_BYTES} bytes)` }], "VAL_INVALID_PREFIX");
  }
  return prefix;
}

const NUL = "holds the character U+0000 (NUL), which cannot be stored";

/** What is wrong inside a value, if anything: too deep, a non-finite number, a NUL character. */
function valueProblem(value: unknown, depth: number): string | undefined {
  if (depth > MAX_VALUE_DEPTH) return `nests deeper than ${MAX_VALUE_DEPTH} levels`;
  if (typeof value === "number" && !Number.isFinite(value)) return "holds a number that is not finite (NaN or Infinity)";
  // Postgres's jsonb cannot hold the character U+0000, in a string or a key.
  if (typeof value === "string" && value.includes("\u0000")) return NUL;
  if (Array.isArray(value)) {
    for (const item of value) {
      const p = valueProblem(item, depth + 1);
      if (p) return p;
    }
  } else if (typeof value === "object" && value !== null) {
    if (Object.keys(value).some((key) => key.includes("\u0000"))) return NUL;
    for (const item of Object.values(value)) {
      const p = valueProblem(item, depth + 1);
      if (p) return p;
    }
  }
  return undefined;
}

/** The violation of a value, if any: required, finite, no NUL character, at most 64 KiB of JSON and 32 levels deep. */
export function valueViolation(value: unknown, field = "value"): FieldViolation | undefined {
  const reason = "VAL_INVALID_VALUE";
  if (value === undefined) return { field, reason, description: "is required (any JSON value, null included)" };
  const problem = valueProblem(value, 1);
  if (problem) return { field, reason, description: problem };
  const bytes = Buffer.byteLength(JSON.stringify(value));
  if (bytes > MAX_VALUE_BYTES) return { field, reason, description: `is ${bytes} bytes as JSON; at most ${MAX_VALUE_BYTES} are allowed` };
  return undefined;
}

/** The violation of an optional expected revision, if any: it must not be negative. */
export function revisionViolation(revision: bigint | undefined, field: string): FieldViolation | undefined {
  return revision !== undefined && revision < 0n ? { field, reason: "VAL_INVALID_REVISION", description: "must not be negative" } : undefined;
}
