import { randomBytes } from "node:crypto";
import { Metadata } from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import { AuditAction } from "@taskmesh/contracts/gen/taskmesh/identity/v1/identity";
import {
  auditType, canonicalScopes, clientIpOf, grantScopes, hashSecret, identityConfig, identityEnvShape, looksLike, newSecret, openPrivateKey,
  parseActivationDelay, parseCreateApiKey, sealPrivateKey, secretPrefix,
} from "../../../services/identity/src/index.js";
import { EnvError, MeshError, loadEnv } from "@taskmesh/kit";

const kek = randomBytes(32).toString("base64");

describe("identity: secrets", () => {
  it("makes prefixed secrets with 256 bits of entropy, hashed with SHA-256, shown by a short prefix", () => {
    const a = newSecret("apiKey");
    const b = newSecret("apiKey");
    expect(a).toMatch(/^tmk_[A-Za-z0-9_-]{43}$/);
    expect(a).not.toBe(b);
    expect(newSecret("refreshToken")).toMatch(/^tmr_/);
    expect(hashSecret(a)).toHaveLength(32);
    expect(hashSecret(a).equals(hashSecret(a))).toBe(true);
    expect(secretPrefix(a)).toBe(a.slice(0, 8));
    expect(looksLike("apiKey", a)).toBe(true);
    expect(looksLike("refreshToken", a)).toBe(false);
    expect(looksLike("apiKey", "tmk_short")).toBe(false);
  });

  it("seals private keys with AES-256-GCM bound to their kid", () => {
    const key = randomBytes(32);
    const plain = randomBytes(1200);
    const sealed = sealPrivateKey(key, "kid-1", plain);
    expect(sealed.includes(plain.subarray(0, 32))).toBe(false);
    expect(openPrivateKey(key, "kid-1", sealed).equals(plain)).toBe(true);
    expect(() => openPrivateKey(key, "kid-2", sealed)).toThrow();
    expect(() => openPrivateKey(randomBytes(32), "kid-1", sealed)).toThrow();
    const tampered = Buffer.from(sealed);
    tampered[tampered.length - 1]! ^= 1;
    expect(() => openPrivateKey(key, "kid-1", tampered)).toThrow();
  });
});

describe("identity: scopes and input", () => {
  it("grants all held scopes when none are asked, a covered subset otherwise (admin covers all)", () => {
    expect(grantScopes(["tasks:write", "tasks:read"], [])).toEqual(["tasks:read", "tasks:write"]);
    expect(grantScopes(["tasks:read"], ["tasks:read", "tasks:read"])).toEqual(["tasks:read"]);
    expect(grantScopes(["tasks:read"], ["tasks:write"])).toBeUndefined();
    expect(grantScopes(["admin"], ["worker"])).toEqual(["worker"]);
    expect(grantScopes(["admin"], [])).toEqual(["admin"]);
    expect(canonicalScopes(["admin", "worker", "bogus"])).toEqual(["worker", "admin"]);
  });

  it("checks a CreateApiKey request field by field", () => {
    expect(parseCreateApiKey({ name: "a.b_c-1", scopes: ["worker", "worker"], subject: "", ttl: { seconds: 3600n, nanos: 0 } }))
      .toEqual({ name: "a.b_c-1", scopes: ["worker"], subject: "", ttlMs: 3_600_000 });
    const error = (() => {
      try {
        parseCreateApiKey({ name: "", scopes: ["nope"], subject: "x".repeat(129), ttl: { seconds: 3599n, nanos: 0 } });
      } catch (e) {
        return e as MeshError;
      }
      throw new Error("expected a refusal");
    })();
    expect(error).toBeInstanceOf(MeshError);
    expect(error.violations.map((v) => v.reason)).toEqual(["VAL_INVALID_NAME", "VAL_UNKNOWN_SCOPE", "VAL_INVALID_ARGUMENT", "VAL_INVALID_EXPIRY"]);
  });

  it("reads the activation delay: the default when unset, 0s..1d otherwise", () => {
    expect(parseActivationDelay({ activationDelay: undefined }, 300_000)).toBe(300_000);
    expect(parseActivationDelay({ activationDelay: { seconds: 0n, nanos: 0 } }, 300_000)).toBe(0);
    expect(() => parseActivationDelay({ activationDelay: { seconds: -1n, nanos: 0 } }, 300_000)).toThrow(/activation_delay/);
  });

  it("takes the client address the edge appended to x-forwarded-for, not one the client forged before it", () => {
    const m = new Metadata();
    expect(clientIpOf(m)).toBe("");
    m.set("x-forwarded-for", "10.0.0.1, 203.0.113.9");
    expect(clientIpOf(m)).toBe("203.0.113.9");
  });

  it("names audit event types after their action", () => {
    expect(auditType(AuditAction.AUDIT_ACTION_TOKEN_ISSUED)).toBe("taskmesh.identity.v1.token_issued");
    expect(auditType(AuditAction.AUDIT_ACTION_REFRESH_TOKEN_REUSED)).toBe("taskmesh.identity.v1.refresh_token_reused");
  });
});

describe("identity: environment", () => {
  it("has the documented defaults, days allowed in durations", () => {
    const env = loadEnv(identityEnvShape, { DATABASE_URL: "postgres://u@h/d", TASKMESH_IDENTITY_KEK: kek });
    expect(env).toMatchObject({
      TASKMESH_IDENTITY_ISSUER: "taskmesh-identity", TASKMESH_IDENTITY_AUDIENCE: "taskmesh", TASKMESH_IDENTITY_ACCESS_TTL: 900_000,
      TASKMESH_IDENTITY_REFRESH_TTL: 30 * 86_400_000, TASKMESH_IDENTITY_FAMILY_TTL: 90 * 86_400_000, TASKMESH_IDENTITY_JWKS_CACHE: 300_000,
      TASKMESH_IDENTITY_REUSE_GRACE: 10_000, TASKMESH_IDENTITY_KEY_ROTATION: 86_400_000,
    });
    expect(env.TASKMESH_IDENTITY_KEK).toHaveLength(32);
    expect(env.KAFKA_BROKERS).toBeUndefined();
    expect(loadEnv(identityEnvShape, { DATABASE_URL: "postgres://u@h/d", TASKMESH_IDENTITY_KEK: kek, TASKMESH_IDENTITY_REFRESH_TTL: "7d", TASKMESH_IDENTITY_REUSE_GRACE: "0s" }))
      .toMatchObject({ TASKMESH_IDENTITY_REFRESH_TTL: 7 * 86_400_000, TASKMESH_IDENTITY_REUSE_GRACE: 0 });
  });

  it("names every bad variable", () => {
    try {
      loadEnv(identityEnvShape, { DATABASE_URL: "postgres://u@h/d", TASKMESH_IDENTITY_KEK: "c2hvcnQ=", TASKMESH_IDENTITY_ACCESS_TTL: "0s" });
      throw new Error("expected an EnvError");
    } catch (e) {
      expect(e).toBeInstanceOf(EnvError);
      expect((e as EnvError).issues.map((i) => i.variable)).toEqual(["TASKMESH_IDENTITY_KEK", "TASKMESH_IDENTITY_ACCESS_TTL"]);
    }
  });

  it("fills defaults and refuses a key-encryption key of the wrong size", () => {
    const config = identityConfig({ kek: randomBytes(32), accessTtlMs: 1000 });
    expect(config).toMatchObject({ accessTtlMs: 1000, issuer: "taskmesh-identity", failureLimit: 10, failureWindowMs: 60_000 });
    expect(Object.isFrozen(config)).toBe(true);
    expect(() => identityConfig({ kek: randomBytes(16) })).toThrow(/32 bytes/);
  });
});
