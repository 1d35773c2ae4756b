import { chmod, mkdir, open, readFile, rename, rm } from "node:fs/promises";
import { dirname, join, basename } from "node:path";
import { randomBytes } from "node:crypto";
import type pg from "pg";
import { withTransaction, type Logger } from "@taskmesh/kit";
import { insertApiKey, revokeApiKeyIn } from "./api-keys.js";
import { hashSecret, looksLike } from "./secrets.js";
import { apiKeySql, type ApiKeyRow } from "./sql/api-keys.js";

/** The name of the bootstrap API key. */
export const BOOTSTRAP_KEY_NAME = "bootstrap";

/** The advisory lock (transaction level) that serializes bootstraps of replicas starting together. */
const LOCK = "SELECT pg_advisory_xact_lock(hashtext('taskmesh:identity'), hashtext('bootstrap'))";

/** What a bootstrap did. */
export type BootstrapOutcome = "kept" | "created";

async function readSecret(file: string): Promise<string | undefined> {
  try {
    return (await readFile(file, "utf8")).trim();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
}

/** Writes `secret` to `file` (mode 0600, its folder created 0700) through a temporary file and a rename, so a reader never sees half of it. */
async function writeSecret(file: string, secret: string): Promise<void> {
  const dir = dirname(file);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const temp = join(dir, `.${basename(file)}.${randomBytes(6).toString("hex")}.tmp`);
  const handle = await open(temp, "wx", 0o600);
  try {
    await handle.writeFile(`${secret}\n`, "utf8");
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await chmod(temp, 0o600);
    await rename(temp, file);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
}

/**
 * Makes sure `file` holds the secret of an active admin API key: keeps it
 * when it does; otherwise creates a key named `bootstrap` (scope `admin`),
 * revoking an active `bootstrap` key whose secret is lost, and writes the
 * new secret to the file (0600). The file is read and written under an
 * advisory lock, in the transaction that creates the key, so replicas
 * starting together create one key, and a failed write creates none.
 */
export async function ensureBootstrapKey(pool: pg.Pool, file: string, log: Logger): Promise<BootstrapOutcome> {
  const outcome = await withTransaction(pool, async (client) => {
    await client.query(LOCK);
    const secret = await readSecret(file);
    if (secret !== undefined && looksLike("apiKey", secret)) {
      const { rows } = await client.query<ApiKeyRow>(apiKeySql.byHash, [hashSecret(secret)]);
      const key = rows[0];
      if (key && key.revoked_at === null && !key.expired) return { outcome: "kept" as const, id: key.id };
    }
    const { rows: stale } = await client.query<ApiKeyRow>(apiKeySql.activeByName, [BOOTSTRAP_KEY_NAME]);
    for (const key of stale) await revokeApiKeyIn(client, key.id, "bootstrap secret lost", BOOTSTRAP_KEY_NAME, undefined);
    const created = await insertApiKey(client, { name: BOOTSTRAP_KEY_NAME, scopes: ["admin"], subject: "", ttlMs: undefined }, BOOTSTRAP_KEY_NAME, undefined);
    if (!created) throw new Error("the bootstrap key name is taken by an active key"); // cannot happen: revoked just above, under the lock
    await writeSecret(file, created.secret);
    return { outcome: "created" as const, id: created.row.id };
  });
  log.info({ file, apiKeyId: outcome.id, outcome: outcome.outcome }, outcome.outcome === "kept" ? "bootstrap API key kept" : "bootstrap API key created");
  return outcome.outcome;
}
