import { credentials, makeGenericClientConstructor, type ClientReadableStream } from "@grpc/grpc-js";
import { service as healthService } from "grpc-health-check";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigServiceService, type WatchResponse } from "@taskmesh/contracts/gen/taskmesh/config/v1/config";
import { freePort } from "@taskmesh/local/secrets";
import { Code, createClient, type MeshError } from "@taskmesh/kit";
import { createTestDatabase, type TestDatabase } from "../../support/postgres.js";
import { startService, waitForServing, type ServiceProcess } from "../../support/processes.js";

// The config process at SIGTERM, with long-lived streams open, as its
// supervisor (exit code) and its clients (stream status) see it.

async function until(check: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

describe("the config process at SIGTERM", () => {
  let db: TestDatabase;
  const processes: ServiceProcess[] = [];

  async function start(): Promise<{ proc: ServiceProcess; address: string }> {
    const address = `127.0.0.1:${await freePort()}`;
    const proc = startService("config", { DATABASE_URL: db.url, TASKMESH_LISTEN: address, TASKMESH_SHUTDOWN_GRACE: "2s" });
    processes.push(proc);
    await waitForServing(address, proc);
    return { proc, address };
  }

  beforeAll(async () => {
    db = await createTestDatabase("config_process_shutdown");
  });

  afterAll(async () => {
    for (const proc of processes) if (proc.child.exitCode === null && proc.child.signalCode === null) proc.child.kill("SIGKILL");
    await Promise.all(processes.map((p) => p.exited));
    await db?.drop();
  });

  it("ends open watches with UNAVAILABLE so clients resume elsewhere, exits 0 and leaves no connection open", async () => {
    const { proc, address } = await start();
    const client = createClient(ConfigServiceService, address);
    try {
      const messages: WatchResponse[] = [];
      const watching = (async () => {
        for await (const m of client.watch({ prefix: "/", afterRevision: undefined })) messages.push(m);
      })().then(() => "ended without an error", (e: unknown) => e as MeshError);
      await until(() => messages.some((m) => m.snapshotComplete), "the snapshot");
      await client.put({ key: "/shutdown/k", value: 1, expectedRevision: undefined });
      await until(() => messages.length === 2, "the live change");

      const signalled = Date.now();
      proc.child.kill("SIGTERM");
      expect(await watching).toMatchObject({ code: Code.UNAVAILABLE, reason: "SYS_SHUTTING_DOWN" });
      expect(await proc.exited).toBe(0);
      expect(Date.now() - signalled).toBeLessThan(2000); // no grace period spent on the stream
    } finally {
      client.close();
    }
    expect(await db.openConnectionsAfter(5000)).toBe(0);
  });

  // Regression: an open Health/Watch (e.g. grpc-js client-side health
  // checking) used to hold the drain for TASKMESH_SHUTDOWN_GRACE: exit 3.
  it("exits 0 at once on SIGTERM while a health watcher is connected", async () => {
    const { proc, address } = await start();
    const Health = makeGenericClientConstructor(healthService, "Health");
    const health = new Health(address, credentials.createInsecure()) as unknown as {
      watch(request: { service: string }): ClientReadableStream<{ status: string }>;
      close(): void;
    };
    const statuses: string[] = [];
    const watch = health.watch({ service: "" });
    watch.on("data", (m: { status: string }) => statuses.push(m.status));
    watch.on("error", () => undefined);
    try {
      await until(() => statuses.length > 0, "the first health status");
      const signalled = Date.now();
      proc.child.kill("SIGTERM");
      const code = await proc.exited;
      expect({ code, fast: Date.now() - signalled < 1500, statuses }).toEqual({ code: 0, fast: true, statuses: ["SERVING", "NOT_SERVING"] });
    } finally {
      watch.cancel();
      health.close();
    }
  });
});
