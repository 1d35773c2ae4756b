import { randomBytes } from "node:crypto";
import { Metadata } from "@grpc/grpc-js";
import pg from "pg";
import { expect } from "vitest";
import { IdentityServiceService } from "@taskmesh/contracts/gen/taskmesh/identity/v1/identity";
import { AuditRelay, buildIdentity, identityConfig, type Identity, type IdentityConfig, type IdentityOptions } from "../../../services/identity/src/index.js";
import { createClient, createLogger, createPool, serveBuilt, type MeshClient, type MeshError } from "@taskmesh/kit";
import { createTestDatabase, type TestDatabase } from "../../support/postgres.js";

/** An identity replica in this process on its own database, a client for it, and a direct pool for checks. */
export interface IdentityHarness {
  readonly client: MeshClient<typeof IdentityServiceService>;
  readonly identity: Identity;
  readonly config: IdentityConfig;
  readonly databaseUrl: string;
  /** A direct connection to the database, for checks behind the service's back. */
  readonly sql: pg.Pool;
  /** The audit relay, when the harness was given a topic. */
  readonly relay: AuditRelay | undefined;
  /** Stops everything, checks no connection leaked and drops the database. */
  stop(): Promise<void>;
}

/** Options of {@link startIdentity}. */
export interface HarnessOptions extends Partial<IdentityOptions> {
  /** Start the key scheduler (sweeps) too. */
  readonly scheduler?: boolean;
  /** Relay the audit log to this Kafka topic. */
  readonly relay?: { readonly topic: string; readonly brokers: readonly string[] };
}

/** Starts a migrated, SERVING identity replica (with its first signing key) on a fresh database named after `label`. */
export async function startIdentity(label: string, options: HarnessOptions = {}): Promise<IdentityHarness> {
  const db: TestDatabase = await createTestDatabase(label);
  const logger = createLogger({ level: "silent" });
  const { scheduler, relay: relayOptions, ...settings } = options;
  const config = identityConfig({ kek: randomBytes(32), ...settings });
  const pool = createPool({ url: db.url, applicationName: "identity-test", logger, max: 20 });
  const relay = relayOptions
    ? new AuditRelay({ databaseUrl: db.url, brokers: relayOptions.brokers, topic: relayOptions.topic, logger, name: "identity-test-relay", pollIntervalMs: 50, lockRetryMs: 100, backoff: { initialMs: 50, maxMs: 500 } })
    : undefined;
  // Built as the identity service builds itself; the key scheduler only where a test asks for it.
  const service = buildIdentity({ name: "identity-test", logger, pool, config, shutdownGraceMs: 1000, scheduler: scheduler === true, ...(relay ? { relay } : {}) });
  const { identity, server } = service;
  const port = await serveBuilt(service, "127.0.0.1:0");
  const client = createClient(IdentityServiceService, `127.0.0.1:${port}`);
  const sql = new pg.Pool({ connectionString: db.url, max: 2 });
  return {
    client, identity, config, databaseUrl: db.url, sql, relay,
    async stop() {
      client.close();
      await server.shutdown();
      await sql.end();
      expect(await db.openConnectionsAfter(5000)).toBe(0);
      await db.drop();
    },
  };
}

/** The SPIFFE ID of the edge, as its sidecar forwards it. */
export const EDGE_XFCC = "By=spiffe://taskmesh.local/identity;URI=spiffe://taskmesh.local/edge";

/** Metadata of a call through the edge: with the claims the edge verified (none: no token), and the client's address. */
export function edge(claims?: { sub: string; scope: string }, clientIp?: string): Metadata {
  const metadata = new Metadata();
  metadata.set("x-forwarded-client-cert", EDGE_XFCC);
  if (claims) metadata.set("x-jwt-payload", Buffer.from(JSON.stringify(claims)).toString("base64url"));
  if (clientIp) metadata.set("x-forwarded-for", clientIp);
  return metadata;
}

/** Metadata of a direct call carrying only a client address (as if forwarded). */
export function fromAddress(clientIp: string): Metadata {
  const metadata = new Metadata();
  metadata.set("x-forwarded-for", clientIp);
  return metadata;
}

/** The MeshError a call fails with (fails the test if it succeeds). */
export const failure = (p: Promise<unknown>) => p.then(() => { throw new Error("expected the call to fail"); }, (e: unknown) => e as MeshError);

/** A protobuf Duration of `seconds`. */
export const seconds = (s: number) => ({ seconds: BigInt(Math.floor(s)), nanos: Math.round((s % 1) * 1e9) });

/** Polls `check` until it returns true; fails with `what` after `timeoutMs`. */
export async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Every row of every table of schema `identity`, as text (to search for secrets that must not be there). */
export async function databaseText(sql: pg.Pool): Promise<string> {
  const { rows: tables } = await sql.query<{ table_name: string }>("SELECT table_name FROM information_schema.tables WHERE table_schema = 'identity'");
  const parts: string[] = [];
  for (const { table_name } of tables) {
    const { rows } = await sql.query<{ t: string }>(`SELECT t::text AS t FROM identity.${pg.escapeIdentifier(table_name)} t`);
    parts.push(...rows.map((r) => r.t));
  }
  return parts.join("\n");
}
