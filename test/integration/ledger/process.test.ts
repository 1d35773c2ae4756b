import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { freePort } from "@taskmesh/local/secrets";
import { uuidv7 } from "@taskmesh/ledger-service";
import { createTestDatabase } from "../../support/postgres.js";
import { startService, waitForServing } from "../../support/processes.js";
import { hashOf } from "./support.js";

const run = promisify(execFile);

describe("the ledger process", () => {
  it("exits 2 naming the variable when DATABASE_URL is bad", async () => {
    const proc = startService("ledger", { DATABASE_URL: "not-a-url", TASKMESH_LISTEN: "127.0.0.1:0" });
    expect(await proc.exited).toBe(2);
    expect(proc.output()).toMatch(/DATABASE_URL/);
  });

  it("migrates at start, serves grpcurl JSON requests, and drains on SIGTERM", async () => {
    const db = await createTestDatabase("ledger_process");
    const address = `127.0.0.1:${await freePort()}`;
    const proc = startService("ledger", { DATABASE_URL: db.url, TASKMESH_LISTEN: address });
    try {
      await waitForServing(address, proc);
      const id = uuidv7();
      const body = JSON.stringify({
        id, capability: "echo", input: { text: "hi" }, idempotencyKey: "k1", requestHash: hashOf("k1"), maxAttempts: 3, timeout: "60s",
        priority: 1, createdBy: "alice", traceId: "0af7651916cd43dd8448eb211c80319c",
      });
      const created = await run("grpcurl", ["-plaintext", "-d", body, address, "taskmesh.ledger.v1.LedgerService/CreateTask"], { timeout: 10_000 });
      expect(JSON.parse(created.stdout)).toMatchObject({ created: true, task: { id, state: "TASK_STATE_PENDING", sequence: "1", input: { text: "hi" } } });
      const got = await run("grpcurl", ["-plaintext", "-d", JSON.stringify({ id }), address, "taskmesh.ledger.v1.LedgerService/GetTask"], { timeout: 10_000 });
      expect(JSON.parse(got.stdout).task).toMatchObject({ id, capability: "echo", maxAttempts: 3, traceId: "0af7651916cd43dd8448eb211c80319c" });
    } finally {
      proc.child.kill("SIGTERM");
      expect(await proc.exited).toBe(0);
      await db.drop();
    }
  });
});
