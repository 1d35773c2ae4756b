import type { Metadata } from "@grpc/grpc-js";
import type pg from "pg";
import type { IdentityServiceService, IssueTokenResponse } from "@taskmesh/contracts/gen/taskmesh/identity/v1/identity";
import {
  MeshError, Violations, decodePageToken, encodePageToken, isUuid, pageSize, principalOf, requireScope,
  type CallContext, type Principal, type ServiceHandlers,
} from "@taskmesh/kit";
import { toApiKey, type ApiKeyStore } from "./api-keys.js";
import { AuditAction, AuditOutcome, originOf, writeAudit } from "./audit.js";
import type { IdentityConfig } from "./config.js";
import type { Revoker, RevokeTarget } from "./revocation.js";
import { toJwk, toSigningKey, type SigningKeys } from "./signing-keys.js";
import type { TokenIssuer, TokenPair } from "./tokens.js";
import { checkId, checkListFilter, checkReason, checkScopes, parseActivationDelay, parseCreateApiKey } from "./validation.js";

/** What the handlers work with. */
export interface IdentityParts {
  readonly pool: pg.Pool;
  readonly config: IdentityConfig;
  readonly keys: SigningKeys;
  readonly tokens: TokenIssuer;
  readonly apiKeys: ApiKeyStore;
  readonly revoker: Revoker;
  /** Called after a change committed audit rows (wakes this process's audit relay). */
  readonly onAudit?: () => void;
}

/** `admin` for an admin rpc; a refusal (missing or invalid token, missing scope) is audited as DENIED under `action`. */
async function requireAdmin(parts: IdentityParts, ctx: CallContext, action: AuditAction | undefined): Promise<Principal> {
  try {
    return requireScope(ctx.metadata, "admin");
  } catch (error) {
    if (action !== undefined && error instanceof MeshError) {
      await writeAudit(parts.pool, originOf(ctx.metadata), {
        action, outcome: AuditOutcome.AUDIT_OUTCOME_DENIED, actor: error.metadata.subject ?? "", reason: error.reason,
      }).catch((e: unknown) => ctx.log.warn({ err: e }, "could not audit a refused call"));
      parts.onAudit?.();
    }
    throw error;
  }
}

/** The caller's principal when it can be told (a token target needs none). */
function principalIfAny(metadata: Metadata): Principal | undefined {
  try {
    return principalOf(metadata);
  } catch {
    return undefined;
  }
}

/** Runs `work`, then wakes the audit relay whether it succeeded or was refused (a refusal is audited too). */
async function audited<T>(parts: IdentityParts, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } finally {
    parts.onAudit?.();
  }
}

/** A token pair as IssueToken and RefreshToken answer it (OAuth 2.0 style). */
function pairResponse(pair: TokenPair): IssueTokenResponse {
  return {
    accessToken: pair.access.token, tokenType: "Bearer", expiresIn: pair.access.expiresIn, refreshToken: pair.refreshToken,
    refreshExpiresIn: secondsUntil(pair.refreshExpiresAt), scopes: [...pair.scopes], expiresAt: pair.access.expiresAt, familyId: pair.familyId,
  };
}

/** The IdentityService handlers. */
export function identityHandlers(parts: IdentityParts): ServiceHandlers<typeof IdentityServiceService> {
  const { config, keys, tokens, apiKeys, revoker } = parts;
  return {
    async issueToken(request, ctx) {
      const v = new Violations();
      if (request.apiKey === "") v.add("api_key", "the API key's secret (tmk_...) is required", "VAL_MISSING_API_KEY");
      checkScopes(v, request.scopes);
      v.check();
      const pair = await audited(parts, () => tokens.issue(request.apiKey, request.scopes, originOf(ctx.metadata), ctx.signal));
      return pairResponse(pair);
    },

    async refreshToken(request, ctx) {
      const v = new Violations();
      if (request.refreshToken === "") v.add("refresh_token", "the refresh token (tmr_...) is required", "VAL_MISSING_REFRESH_TOKEN");
      checkScopes(v, request.scopes);
      v.check();
      const pair = await audited(parts, () => tokens.refresh(request.refreshToken, request.scopes, originOf(ctx.metadata), ctx.signal));
      return pairResponse(pair);
    },

    async revokeToken(request, ctx) {
      const v = new Violations();
      const target = request.target;
      if (!target || target.value === "") v.add("target", "give one of token, family_id or subject", "VAL_MISSING_TARGET");
      else if (target.$case === "familyId" && !isUuid(target.value)) v.add("family_id", "a UUID", "VAL_INVALID_ID");
      else if (target.$case === "subject" && target.value.length > 128) v.add("subject", "at most 128 characters", "VAL_INVALID_ARGUMENT");
      checkReason(v, request.reason);
      v.check();
      const t = target!;
      const what: RevokeTarget = t.$case === "token" ? { kind: "token", token: t.value }
        : t.$case === "familyId" ? { kind: "family", familyId: t.value } : { kind: "subject", subject: t.value };
      // A token is proof enough; a family or a subject needs to know who asks.
      const principal = what.kind === "token" ? principalIfAny(ctx.metadata) : principalOf(ctx.metadata);
      const revoked = await audited(parts, () => revoker.revoke(what, request.reason, principal, originOf(ctx.metadata), ctx.signal));
      return { revokedFamilies: BigInt(revoked) };
    },

    async createApiKey(request, ctx) {
      const principal = await requireAdmin(parts, ctx, AuditAction.AUDIT_ACTION_API_KEY_CREATED);
      const key = parseCreateApiKey(request);
      const created = await audited(parts, () => apiKeys.create(key, principal.subject, originOf(ctx.metadata), ctx.signal));
      return { apiKey: toApiKey(created.row), secret: created.secret };
    },

    async listApiKeys(request, ctx) {
      await requireAdmin(parts, ctx, undefined);
      checkListFilter(request);
      const limit = pageSize(request.pageSize);
      const scope = `api-keys:${request.includeInactive}:${request.subject}`;
      const cursor = decodePageToken(request.pageToken, scope);
      if (cursor !== undefined && (typeof cursor !== "string" || !isUuid(cursor))) {
        new Violations().add("page_token", "not a page token of this query", "VAL_INVALID_PAGE_TOKEN").check();
      }
      const rows = await apiKeys.list({ beforeId: cursor as string | undefined, includeInactive: request.includeInactive, subject: request.subject, limit: limit + 1 }, ctx.signal);
      const page = rows.slice(0, limit);
      return { apiKeys: page.map(toApiKey), nextPageToken: rows.length > limit ? encodePageToken(scope, page.at(-1)!.id) : "" };
    },

    async revokeApiKey(request, ctx) {
      const principal = await requireAdmin(parts, ctx, AuditAction.AUDIT_ACTION_API_KEY_REVOKED);
      checkId("id", request.id);
      const v = new Violations();
      checkReason(v, request.reason);
      v.check();
      const { row, revokedFamilies } = await audited(parts, () => apiKeys.revoke(request.id, request.reason, principal.subject, originOf(ctx.metadata), ctx.signal));
      return { apiKey: toApiKey(row), revokedFamilies: BigInt(revokedFamilies) };
    },

    async rotateSigningKey(request, ctx) {
      const principal = await requireAdmin(parts, ctx, AuditAction.AUDIT_ACTION_SIGNING_KEY_ROTATED);
      const delayMs = parseActivationDelay(request, config.jwksCacheMs);
      const { newKey, keys: all } = await audited(parts, () => keys.rotate(delayMs, principal.subject, originOf(ctx.metadata), ctx.signal));
      return { newKey: toSigningKey(newKey), keys: all.map(toSigningKey) };
    },

    async getJwks(_request, ctx) {
      return { keys: (await keys.published(ctx.signal)).map(toJwk) };
    },
  };
}

/** Whole seconds from now until `at` (at least 0). */
function secondsUntil(at: Date): number {
  return Math.max(0, Math.floor((at.getTime() - Date.now()) / 1000));
}
