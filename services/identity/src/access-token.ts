import { SignJWT, createLocalJWKSet, jwtVerify, type JWTPayload } from "jose";
import type { Jwk } from "@taskmesh/contracts/gen/taskmesh/identity/v1/identity";
import { uuidv7 } from "@taskmesh/kit";
import type { IdentityConfig } from "./config.js";
import type { Signer } from "./signing-keys.js";

/** What an access token says beyond the configured issuer and audience. */
export interface AccessGrant {
  readonly subject: string;
  readonly scopes: readonly string[];
  readonly familyId: string;
  readonly apiKeyId: string;
}

/** A signed access token and when it expires. */
export interface SignedAccessToken {
  readonly token: string;
  readonly jti: string;
  readonly expiresAt: Date;
  /** Whole seconds until it expires. */
  readonly expiresIn: number;
}

/** Signs an RS256 access token (header `kid`; claims iss, aud, sub, scope, jti, fam, akid, iat, exp). */
export async function signAccessToken(signer: Signer, grant: AccessGrant, config: IdentityConfig, nowMs = Date.now()): Promise<SignedAccessToken> {
  const iat = Math.floor(nowMs / 1000);
  const expiresIn = Math.max(1, Math.round(config.accessTtlMs / 1000));
  const jti = uuidv7(nowMs);
  const token = await new SignJWT({ scope: grant.scopes.join(" "), fam: grant.familyId, akid: grant.apiKeyId })
    .setProtectedHeader({ alg: "RS256", kid: signer.kid, typ: "JWT" })
    .setIssuer(config.issuer)
    .setAudience(config.audience)
    .setSubject(grant.subject)
    .setJti(jti)
    .setIssuedAt(iat)
    .setExpirationTime(iat + expiresIn)
    .sign(signer.key);
  return { token, jti, expiresAt: new Date((iat + expiresIn) * 1000), expiresIn };
}

/** The claims of an access token this service signed with one of `keys` and that is still valid; undefined otherwise. */
export async function verifyAccessToken(token: string, keys: readonly Jwk[], config: IdentityConfig): Promise<JWTPayload | undefined> {
  if (keys.length === 0) return undefined;
  try {
    const jwks = createLocalJWKSet({ keys: keys.map((k) => ({ ...k })) });
    const { payload } = await jwtVerify(token, jwks, { issuer: config.issuer, audience: config.audience, algorithms: ["RS256"] });
    return payload;
  } catch {
    return undefined;
  }
}
