import type { CreateApiKeyRequest, ListApiKeysRequest, RotateSigningKeyRequest } from "@taskmesh/contracts/gen/taskmesh/identity/v1/identity";
import { SCOPES, Violations, durationMs, isScope, isUuid, scopesOf, type Scope } from "@taskmesh/kit";

const NAME = /^[A-Za-z0-9._-]{1,64}$/;
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
/** The shortest and longest life of an API key. */
export const API_KEY_TTL = { minMs: HOUR, maxMs: 3650 * DAY } as const;
/** The longest activation delay of a new signing key. */
export const MAX_ACTIVATION_DELAY_MS = DAY;
/** The longest free-text reason for the audit log. */
export const MAX_REASON = 256;

/** Scopes in the canonical order of SCOPES, without duplicates. */
export function canonicalScopes(scopes: Iterable<string>): Scope[] {
  const wanted = new Set(scopes);
  return SCOPES.filter((s) => wanted.has(s));
}

/** Adds a VAL_UNKNOWN_SCOPE violation for each unknown scope name in `scopes`. */
export function checkScopes(v: Violations, scopes: readonly string[], field = "scopes"): void {
  scopes.forEach((s, i) => {
    if (!isScope(s)) v.add(`${field}[${i}]`, `unknown scope ${JSON.stringify(s.slice(0, 64))}; known: ${SCOPES.join(", ")}`, "VAL_UNKNOWN_SCOPE");
  });
}

/**
 * The scopes to grant when `requested` are asked of a holder of `held`:
 * all of `held` when none are asked, else the asked ones if `held` covers
 * them (`admin` covers every scope); undefined when it does not.
 */
export function grantScopes(held: readonly string[], requested: readonly string[]): Scope[] | undefined {
  if (requested.length === 0) return canonicalScopes(held);
  const covered = scopesOf(held.join(" "));
  return requested.every((s) => isScope(s) && covered.has(s)) ? canonicalScopes(requested) : undefined;
}

/** Adds a violation when a free-text reason is too long. */
export function checkReason(v: Violations, reason: string): void {
  if (reason.length > MAX_REASON) v.add("reason", `at most ${MAX_REASON} characters`, "VAL_INVALID_ARGUMENT");
}

/** A valid CreateApiKey request, normalized. */
export interface NewApiKey {
  readonly name: string;
  readonly scopes: Scope[];
  /** Empty: `apikey:<id>`. */
  readonly subject: string;
  readonly ttlMs: number | undefined;
}

/** Checks a CreateApiKey request: INVALID_ARGUMENT with every bad field. */
export function parseCreateApiKey(request: CreateApiKeyRequest): NewApiKey {
  const v = new Violations();
  if (!NAME.test(request.name)) v.add("name", "1..64 characters of A-Z a-z 0-9 . _ -", "VAL_INVALID_NAME");
  if (request.scopes.length === 0) v.add("scopes", `at least one scope of: ${SCOPES.join(", ")}`, "VAL_UNKNOWN_SCOPE");
  checkScopes(v, request.scopes);
  if (request.subject !== "" && (request.subject.length > 128 || /[\p{Cc}\s]/u.test(request.subject))) {
    v.add("subject", "1..128 characters without spaces or control characters (or empty for apikey:<id>)", "VAL_INVALID_ARGUMENT");
  }
  const ttlMs = durationMs(request.ttl);
  if (ttlMs !== undefined && !(ttlMs >= API_KEY_TTL.minMs && ttlMs <= API_KEY_TTL.maxMs)) v.add("ttl", "between 1h and 3650d (unset: never expires)", "VAL_INVALID_EXPIRY");
  v.check();
  return { name: request.name, scopes: canonicalScopes(request.scopes), subject: request.subject, ttlMs };
}

/** Checks a ListApiKeys request's subject filter. */
export function checkListFilter(request: ListApiKeysRequest): void {
  const v = new Violations();
  if (request.subject.length > 128) v.add("subject", "at most 128 characters", "VAL_INVALID_ARGUMENT");
  v.check();
}

/** Checks an id field holding a UUID. */
export function checkId(field: string, id: string): void {
  const v = new Violations();
  if (!isUuid(id)) v.add(field, "a UUID", "VAL_INVALID_ID");
  v.check();
}

/** The activation delay of a rotation in ms: `defaultMs` when unset, else 0s..1d. */
export function parseActivationDelay(request: RotateSigningKeyRequest, defaultMs: number): number {
  const ms = durationMs(request.activationDelay);
  if (ms === undefined) return defaultMs;
  const v = new Violations();
  if (!(ms >= 0 && ms <= MAX_ACTIVATION_DELAY_MS)) v.add("activation_delay", "between 0s and 1d (unset: the JWKS cache time)", "VAL_INVALID_DURATION");
  v.check();
  return ms;
}
