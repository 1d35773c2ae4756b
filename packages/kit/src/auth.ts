/**
 * Who is calling, and may they: the principal of a call and scope checks.
 *
 * The edge Envoy verifies access tokens (`jwt_authn`) and forwards the
 * verified claims in `x-jwt-payload` (base64url JSON); the edge strips any
 * copy a client sent, so a claim set that reaches a service is one the edge
 * verified. Each sidecar sets `x-forwarded-client-cert` to its caller's mesh
 * identity (SANITIZE_SET: never taken from the caller). From those two:
 *
 * | claims | immediate caller (XFCC)        | principal                                   |
 * |--------|--------------------------------|---------------------------------------------|
 * | yes    | any                            | `token`: the token's subject and scopes     |
 * | no     | the edge                       | none: UNAUTHENTICATED (AUTH_MISSING_TOKEN)  |
 * | no     | another mesh service           | `mesh`: its SPIFFE ID, every scope (the topology's RBAC already chose who may call) |
 * | no     | none (a direct loopback call)  | `local`: every scope (apps listen on loopback only; tests and tools call them so) |
 */

import type { Metadata } from "@grpc/grpc-js";
import { Code, MeshError } from "./errors.js";

/** The header that carries the claims the edge verified. */
export const CLAIMS_HEADER = "x-jwt-payload";

/** Every scope an access token may carry; `admin` implies all others. */
import { SCOPES, type Scope } from "@taskmesh/contracts";

export { SCOPES, type Scope };

/** True for a scope name taskmesh knows. */
export function isScope(value: string): value is Scope {
  return (SCOPES as readonly string[]).includes(value);
}

/** The verified claims of an access token, as identity issues them. */
export interface AccessClaims {
  readonly sub: string;
  readonly scope: string;
  readonly iss?: string;
  readonly aud?: string | readonly string[];
  readonly jti?: string;
  readonly fam?: string;
  readonly akid?: string;
  readonly iat?: number;
  readonly exp?: number;
}

/** Who a call comes from. */
export interface Principal {
  /** `token`: an access token the edge verified; `mesh`: another service; `local`: a direct loopback call. */
  readonly kind: "token" | "mesh" | "local";
  /** The token's subject, the caller's SPIFFE ID, or `local`. */
  readonly subject: string;
  /** The scopes granted (`admin` expanded to all). */
  readonly scopes: ReadonlySet<Scope>;
  /** The token's claims, for `token` principals. */
  readonly claims?: AccessClaims;
}

const ALL_SCOPES: ReadonlySet<Scope> = new Set(SCOPES);

/** The SPIFFE ID in an `x-forwarded-client-cert` value (`...;URI=spiffe://...`), if any. */
export function callerSpiffeId(xfcc: string): string | undefined {
  for (const part of xfcc.split(/[;,]/)) {
    const [key, ...rest] = part.trim().split("=");
    const value = rest.join("=").replace(/^"|"$/g, "");
    if (key?.toUpperCase() === "URI" && value.startsWith("spiffe://")) return value;
  }
  return undefined;
}

/** Scopes of a space-separated `scope` claim; `admin` expands to every scope, unknown names are ignored. */
export function scopesOf(scope: string): ReadonlySet<Scope> {
  const named = scope.split(" ").filter(isScope);
  return named.includes("admin") ? ALL_SCOPES : new Set(named);
}

function unauthenticated(reason: "AUTH_MISSING_TOKEN" | "AUTH_INVALID_TOKEN", message: string): MeshError {
  return new MeshError({ code: Code.UNAUTHENTICATED, reason, message });
}

function decodeClaims(raw: string): AccessClaims {
  let claims: unknown;
  try {
    claims = JSON.parse(Buffer.from(raw, "base64url").toString("utf8"));
  } catch {
    throw unauthenticated("AUTH_INVALID_TOKEN", "the forwarded token claims are not base64url JSON");
  }
  const c = claims as Partial<AccessClaims> | null;
  if (typeof c !== "object" || c === null || typeof c.sub !== "string" || c.sub === "") {
    throw unauthenticated("AUTH_INVALID_TOKEN", "the forwarded token claims have no subject");
  }
  return { ...c, sub: c.sub, scope: typeof c.scope === "string" ? c.scope : "" };
}

/** Principals of the claim sets seen last: a client sends one token on every call until it expires. */
const tokenPrincipals = new Map<string, Principal>();
const TOKEN_PRINCIPALS = 1000;

/** The principal of a forwarded claim set, decoded once per distinct value (claims never change; a new token is a new value). */
function tokenPrincipal(raw: string): Principal {
  let principal = tokenPrincipals.get(raw);
  if (principal === undefined) {
    const claims = decodeClaims(raw);
    principal = { kind: "token", subject: claims.sub, scopes: scopesOf(claims.scope), claims };
    if (tokenPrincipals.size >= TOKEN_PRINCIPALS) tokenPrincipals.clear();
    tokenPrincipals.set(raw, principal);
  }
  return principal;
}

/**
 * The principal of a call, from its metadata (see the table above).
 * Throws UNAUTHENTICATED for a call through the edge without verified
 * claims, or with claims that cannot be read.
 */
export function principalOf(metadata: Metadata, trustDomain = "taskmesh.local"): Principal {
  const claimValues = metadata.get(CLAIMS_HEADER);
  if (claimValues.length > 1) throw unauthenticated("AUTH_INVALID_TOKEN", `more than one ${CLAIMS_HEADER} header`);
  if (claimValues.length === 1) return tokenPrincipal(String(claimValues[0]));
  const xfcc = metadata.get("x-forwarded-client-cert").map(String).join(",");
  const caller = xfcc === "" ? undefined : callerSpiffeId(xfcc);
  if (caller === undefined) {
    if (xfcc !== "") throw unauthenticated("AUTH_MISSING_TOKEN", "the calling certificate has no mesh identity");
    return { kind: "local", subject: "local", scopes: ALL_SCOPES };
  }
  if (caller === `spiffe://${trustDomain}/edge`) {
    throw unauthenticated("AUTH_MISSING_TOKEN", "an access token is required (authorization: Bearer <token>)");
  }
  return { kind: "mesh", subject: caller, scopes: ALL_SCOPES };
}

/**
 * The principal of a call that needs `scope`: UNAUTHENTICATED as in
 * {@link principalOf}, PERMISSION_DENIED (AUTH_MISSING_SCOPE, with the
 * scope in ErrorInfo metadata) when the principal lacks it.
 */
export function requireScope(metadata: Metadata, scope: Scope, trustDomain?: string): Principal {
  const principal = principalOf(metadata, trustDomain);
  if (!principal.scopes.has(scope)) {
    throw new MeshError({
      code: Code.PERMISSION_DENIED,
      reason: "AUTH_MISSING_SCOPE",
      message: `this call needs the ${scope} scope`,
      metadata: { scope, subject: principal.subject },
    });
  }
  return principal;
}
