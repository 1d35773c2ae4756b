import { invalidArgument } from "./errors.js";

/** Page sizes: 1..1000, 100 when the caller gives 0. */
export const PAGE_SIZE = { default: 100, max: 1000 } as const;

/** The page size to use, or INVALID_ARGUMENT (`VAL_INVALID_PAGE_SIZE`) for a negative or too large one. */
export function pageSize(requested: number, field = "page_size"): number {
  if (requested === 0) return PAGE_SIZE.default;
  if (!Number.isInteger(requested) || requested < 1 || requested > PAGE_SIZE.max) {
    throw invalidArgument([{ field, description: `must be between 1 and ${PAGE_SIZE.max} (0 for ${PAGE_SIZE.default})` }], "VAL_INVALID_PAGE_SIZE");
  }
  return requested;
}

/**
 * Encodes a cursor as an opaque page token, bound to the query it pages
 * (`scope`), so a token is refused for any other query.
 */
export function encodePageToken(scope: string, cursor: string | number): string {
  return Buffer.from(JSON.stringify({ v: 1, s: scope, c: cursor })).toString("base64url");
}

/**
 * Decodes a page token made by {@link encodePageToken} for `scope`;
 * `undefined` for an empty token, INVALID_ARGUMENT (`VAL_INVALID_PAGE_TOKEN`)
 * for a malformed, foreign or tampered one.
 */
export function decodePageToken(token: string, scope: string, field = "page_token"): string | number | undefined {
  if (token === "") return undefined;
  const bad = () => invalidArgument([{ field, description: "not a page token of this query; pass the next_page_token you were given, or nothing" }], "VAL_INVALID_PAGE_TOKEN");
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
  } catch {
    throw bad();
  }
  const p = parsed as { v?: unknown; s?: unknown; c?: unknown };
  if (p?.v !== 1 || p.s !== scope || (typeof p.c !== "string" && typeof p.c !== "number")) throw bad();
  return p.c;
}
