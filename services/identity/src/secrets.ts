import { createHash, randomBytes, timingSafeEqual } from "node:crypto";

/** The prefixes of taskmesh's opaque secrets: API keys and refresh tokens. */
export const SECRET_PREFIX = { apiKey: "tmk_", refreshToken: "tmr_" } as const;

/** Characters of an API key's secret shown for recognition (`tmk_` and 4 more). */
const SHOWN = SECRET_PREFIX.apiKey.length + 4;

/** A new secret: the prefix and 32 random bytes in base64url (256 bits of entropy). */
export function newSecret(kind: keyof typeof SECRET_PREFIX): string {
  return `${SECRET_PREFIX[kind]}${randomBytes(32).toString("base64url")}`;
}

/** The SHA-256 of a secret: what the database stores and looks up by. */
export function hashSecret(secret: string): Buffer {
  return createHash("sha256").update(secret, "utf8").digest();
}

/** The first characters of an API key's secret, safe to show (e.g. `tmk_3fA9`). */
export function secretPrefix(secret: string): string {
  return secret.slice(0, SHOWN);
}

/** True when `secret` hashes to `hash` (constant time). */
export function matchesHash(secret: string, hash: Buffer): boolean {
  const actual = hashSecret(secret);
  return actual.length === hash.length && timingSafeEqual(actual, hash);
}

/** True when `text` has the shape of a secret of `kind` (a cheap check before any lookup). */
export function looksLike(kind: keyof typeof SECRET_PREFIX, text: string): boolean {
  return text.startsWith(SECRET_PREFIX[kind]) && /^[A-Za-z0-9_-]{20,200}$/.test(text);
}
