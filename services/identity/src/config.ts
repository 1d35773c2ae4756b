import { TOKEN_ISSUER } from "@taskmesh/contracts";
import { z } from "zod";
import { envSchemas, kitEnvShape, parseDuration } from "@taskmesh/kit";

/** Settings of the identity service; every field is optional but the key-encryption key. */
export interface IdentityOptions {
  /** The key-encryption key of the signing keys' private parts: 32 bytes (AES-256-GCM). */
  readonly kek: Buffer;
  /** The tokens' `iss`. @default "taskmesh-identity" */
  readonly issuer?: string;
  /** The tokens' `aud`. @default "taskmesh" */
  readonly audience?: string;
  /** Lifetime of an access token, in ms. @default 15 minutes */
  readonly accessTtlMs?: number;
  /** Lifetime of a refresh token, in ms. @default 30 days */
  readonly refreshTtlMs?: number;
  /** Absolute lifetime of a token family, in ms. @default 90 days */
  readonly familyTtlMs?: number;
  /** How long verifiers cache the JWKS, in ms: the default activation delay of a new signing key. @default 5 minutes */
  readonly jwksCacheMs?: number;
  /** How long after its rotation a retired refresh token is refused without revoking its family (a retried request), in ms. @default 10 seconds */
  readonly reuseGraceMs?: number;
  /** How often the signing key is rotated on schedule, in ms. @default 24 hours */
  readonly keyRotationMs?: number;
  /** How often due activations, retirements and scheduled rotations are looked for, in ms. @default 5 seconds */
  readonly sweepIntervalMs?: number;
  /** IssueToken failures from one client address within `failureWindowMs` before it is refused. @default 10 */
  readonly failureLimit?: number;
  /** The window of `failureLimit`, in ms. @default 1 minute */
  readonly failureWindowMs?: number;
}

/** {@link IdentityOptions} with every default filled in. */
export type IdentityConfig = Readonly<Required<IdentityOptions>>;

const MINUTE = 60_000;
const DAY = 24 * 60 * MINUTE;

/** Fills the defaults of `options` and checks the key-encryption key; returns a frozen config. */
export function identityConfig(options: IdentityOptions): IdentityConfig {
  if (options.kek.length !== 32) throw new TypeError("the key-encryption key must be 32 bytes");
  return Object.freeze({
    issuer: TOKEN_ISSUER,
    audience: "taskmesh",
    accessTtlMs: 15 * MINUTE,
    refreshTtlMs: 30 * DAY,
    familyTtlMs: 90 * DAY,
    jwksCacheMs: 5 * MINUTE,
    reuseGraceMs: 10_000,
    keyRotationMs: DAY,
    sweepIntervalMs: 5000,
    failureLimit: 10,
    failureWindowMs: MINUTE,
    ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)),
    kek: Buffer.from(options.kek),
  } as IdentityConfig);
}

/** A readable duration that may also be given in days (`30d`), in ms. */
function longDuration(allowZero = false) {
  return z.string().transform((text, ctx) => {
    const days = /^\s*(\d+(?:\.\d+)?)\s*d\s*$/.exec(text);
    const ms = days ? Math.round(Number(days[1]) * DAY) : parseDuration(text);
    if (ms === undefined || (ms === 0 && !allowZero)) {
      ctx.addIssue({ code: "custom", message: `expected a duration like 10s, 15m, 24h or 30d, got ${JSON.stringify(text)}` });
      return z.NEVER;
    }
    return ms;
  });
}

/** The identity service's environment (read once, in main.ts). */
export const identityEnvShape = {
  ...kitEnvShape,
  /** The Postgres database holding schema `identity`. */
  DATABASE_URL: envSchemas.url("postgres", "postgresql"),
  /** Kafka bootstrap brokers, comma-separated `host:port`; unset: no audit relay (audit rows stay unpublished). */
  KAFKA_BROKERS: z.string().trim().transform((s) => s.split(",").map((b) => b.trim()).filter((b) => b !== ""))
    .pipe(z.array(envSchemas.address()).min(1, "expected at least one host:port")).optional(),
  /** The key-encryption key of the signing keys: base64 of 32 bytes. */
  TASKMESH_IDENTITY_KEK: z.string().trim().transform((text, ctx) => {
    const key = Buffer.from(text, "base64");
    if (key.length !== 32 || !/^[A-Za-z0-9+/_-]+={0,2}$/.test(text)) {
      ctx.addIssue({ code: "custom", message: "expected base64 of 32 random bytes (e.g. `openssl rand -base64 32`)" });
      return z.NEVER;
    }
    return key;
  }),
  TASKMESH_IDENTITY_ISSUER: z.string().trim().min(1).default(TOKEN_ISSUER),
  TASKMESH_IDENTITY_AUDIENCE: z.string().trim().min(1).default("taskmesh"),
  TASKMESH_IDENTITY_ACCESS_TTL: longDuration().default(15 * MINUTE),
  TASKMESH_IDENTITY_REFRESH_TTL: longDuration().default(30 * DAY),
  TASKMESH_IDENTITY_FAMILY_TTL: longDuration().default(90 * DAY),
  TASKMESH_IDENTITY_JWKS_CACHE: longDuration().default(5 * MINUTE),
  TASKMESH_IDENTITY_REUSE_GRACE: longDuration(true).default(10_000),
  TASKMESH_IDENTITY_KEY_ROTATION: longDuration().default(DAY),
  /** A file holding the secret of an admin API key named `bootstrap`; created (0600) when missing or stale. */
  TASKMESH_BOOTSTRAP_KEY_FILE: z.string().trim().min(1).optional(),
};
