/**
 * `taskmesh token`: a development access token for grpcurl and curl,
 * issued by identity for the bootstrap admin key that `up` made (its
 * secret is in `.taskmesh/bootstrap-api-key`, 0600).
 */
import { existsSync, readFileSync } from "node:fs";
import { IdentityServiceService } from "@taskmesh/contracts/gen/taskmesh/identity/v1/identity";
import { bootstrapKeyFile } from "@taskmesh/local/plan";
import { STATE_DIR } from "@taskmesh/local/state";
import { serviceAddress, stdio, UsageError, withClient, type Io } from "./rpc.js";

export interface TokenOptions {
  /** Scopes to ask for (a subset of the key's, which is `admin`); all when none. */
  readonly scope?: readonly string[];
  /** Print the whole response as JSON (refresh token and expiry included). */
  readonly json?: boolean;
  /** An identity instance; default TASKMESH_UPSTREAM_IDENTITY, else the running one. */
  readonly address?: string;
  /** The API key's secret; default the bootstrap key's. */
  readonly apiKey?: string;
}

/** Prints an access token (or, with --json, the whole token response); exit 0 on success. */
export async function token(options: TokenOptions, io: Io = stdio, stateDir = STATE_DIR): Promise<number> {
  const file = bootstrapKeyFile(stateDir);
  const apiKey = options.apiKey ?? process.env.TASKMESH_API_KEY ?? (existsSync(file) ? readFileSync(file, "utf8").trim() : undefined);
  if (!apiKey) throw new UsageError(`no API key: start taskmesh (npx taskmesh up) so identity writes ${file}, or pass --api-key`);
  return withClient(IdentityServiceService, serviceAddress("identity", options.address), async (identity) => {
    const issued = await identity.issueToken({ apiKey, scopes: [...(options.scope ?? [])] });
    if (options.json) {
      io.out(JSON.stringify({
        accessToken: issued.accessToken, tokenType: issued.tokenType, expiresIn: issued.expiresIn, expiresAt: issued.expiresAt?.toISOString(),
        refreshToken: issued.refreshToken, refreshExpiresIn: issued.refreshExpiresIn, scopes: issued.scopes, familyId: issued.familyId,
      }));
    } else {
      io.out(issued.accessToken);
    }
    return 0;
  }, io);
}
