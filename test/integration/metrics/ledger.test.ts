import { describe, expect, it } from "vitest";
import { LedgerServiceService } from "@taskmesh/contracts/gen/taskmesh/ledger/v1/ledger";
import { freePort } from "@taskmesh/local/secrets";
import { Code, createClient, uuidv7, type MeshError } from "@taskmesh/kit";
import { createTestDatabase } from "../../support/postgres.js";
import { startService, waitForServing } from "../../support/processes.js";
import { createRequest } from "../ledger/support.js";
import { sampleOf, scrape } from "./prometheus-text.js";

const LEDGER = "taskmesh.ledger.v1.LedgerService";

describe("the ledger's /metrics", () => {
  it("reports tasks by state, queues per capability, the outbox and its RPCs, on TASKMESH_METRICS_LISTEN", async () => {
    const db = await createTestDatabase("metrics_ledger");
    const address = `127.0.0.1:${await freePort()}`;
    const metricsPort = await freePort();
    const proc = startService("ledger", { DATABASE_URL: db.url, TASKMESH_LISTEN: address, TASKMESH_METRICS_LISTEN: `127.0.0.1:${metricsPort}` });
    const client = createClient(LedgerServiceService, address);
    try {
      await waitForServing(address, proc);
      const capabilities = ["echo", "echo", "echo", "hash", "hash"];
      for (const capability of capabilities) expect((await client.createTask(createRequest({ capability }))).created).toBe(true);
      const missing = await client.getTask({ id: uuidv7(), view: 0 }).then(() => "found", (e: MeshError) => Code[e.code]);
      expect(missing).toBe("NOT_FOUND");

      const text = await scrape(`http://127.0.0.1:${metricsPort}/metrics`);
      expect(sampleOf(text, "taskmesh_tasks", { state: "pending" })).toBe(capabilities.length);
      expect(sampleOf(text, "taskmesh_tasks", { state: "running" })).toBe(0);
      expect(sampleOf(text, "taskmesh_tasks", { state: "succeeded" })).toBe(0);
      expect(sampleOf(text, "taskmesh_queue_depth", { capability: "echo" })).toBe(3);
      expect(sampleOf(text, "taskmesh_queue_depth", { capability: "hash" })).toBe(2);
      expect(sampleOf(text, "taskmesh_queue_oldest_pending_age_seconds", { capability: "echo" })).toBeGreaterThanOrEqual(0);
      // No KAFKA_BROKERS: the relay is off, so every event written stays unpublished.
      expect(sampleOf(text, "taskmesh_outbox_lag", {})).toBeGreaterThanOrEqual(capabilities.length);
      expect(sampleOf(text, "taskmesh_outbox_oldest_age_seconds", {})).toBeGreaterThanOrEqual(0);
      expect(sampleOf(text, "rpc_server_requests_total", { service: LEDGER, method: "CreateTask", code: "OK" })).toBe(capabilities.length);
      expect(sampleOf(text, "rpc_server_duration_seconds_count", { service: LEDGER, method: "CreateTask", code: "OK" })).toBe(capabilities.length);
      expect(sampleOf(text, "rpc_server_requests_total", { service: LEDGER, method: "GetTask", code: "NOT_FOUND" })).toBe(1);
      expect(sampleOf(text, "process_resident_memory_bytes", {})).toBeGreaterThan(0);
      expect(sampleOf(text, "nodejs_eventloop_lag_seconds", {})).toBeGreaterThanOrEqual(0);
    } finally {
      client.close();
      proc.child.kill("SIGTERM");
      expect(await proc.exited).toBe(0);
      await db.drop();
    }
    await expect(fetch(`http://127.0.0.1:${metricsPort}/metrics`)).rejects.toThrow();
  });

  it("still answers while Postgres is unreachable: process series there, the ledger's own left out", async () => {
    const metricsPort = await freePort();
    const proc = startService("ledger", { DATABASE_URL: "postgres://u:p@127.0.0.1:1/none", TASKMESH_LISTEN: "127.0.0.1:0", TASKMESH_METRICS_LISTEN: `127.0.0.1:${metricsPort}` });
    try {
      let text: string | undefined;
      for (const until = Date.now() + 15_000; text === undefined && Date.now() < until;) {
        text = await scrape(`http://127.0.0.1:${metricsPort}/metrics`).catch(() => new Promise<undefined>((r) => setTimeout(() => r(undefined), 100)));
      }
      expect(sampleOf(text!, "process_resident_memory_bytes", {})).toBeGreaterThan(0);
      expect(text).not.toMatch(/^taskmesh_tasks\{/m);
      expect(text).toMatch(/^# TYPE taskmesh_tasks gauge/m);
    } finally {
      proc.child.kill("SIGTERM");
      await proc.exited;
    }
  });

  it("exits 2 naming the variable when TASKMESH_METRICS_LISTEN is not host:port", async () => {
    const proc = startService("ledger", { DATABASE_URL: "postgres://127.0.0.1:1/none", TASKMESH_METRICS_LISTEN: "9464" });
    expect(await proc.exited).toBe(2);
    expect(proc.output()).toMatch(/TASKMESH_METRICS_LISTEN/);
  });
});
