import { Metadata } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GetTaskRequest, ListTasksRequest } from "@taskmesh/contracts/gen/taskmesh/coordinator/v1/task_service";
import { TaskState } from "@taskmesh/contracts/gen/taskmesh/task/v1/task";
import { Code, MeshError, fromRpcStatus } from "@taskmesh/kit";
import { startStack, submitRequest, until, type Stack } from "./stack.js";

const failure = (p: Promise<unknown>) => p.then(() => { throw new Error("expected the call to fail"); }, (e: unknown) => MeshError.from(e));

describe("coordinator: submits — idempotency, bad input, listing", () => {
  let stack: Stack;
  const count = async (): Promise<number> => Number((await stack.sql.query("SELECT count(*) AS n FROM ledger.tasks")).rows[0].n);

  beforeAll(async () => {
    stack = await startStack("coord_submit", { workers: [{ id: "submit-w1", capabilities: ["echo"], concurrency: 32 }] });
  }, 180_000); // the processes start one after the other, each within START_MS
  afterAll(async () => { await stack?.stop(); }, 30_000);

  it("1,000 tasks submitted twice with the same idempotency keys make exactly 1,000 tasks", async () => {
    const before = await count();
    const keys = Array.from({ length: 1000 }, (_, i) => `bulk-${i}`);
    const submitAll = async () => {
      const out: Array<{ id: string; deduplicated: boolean }> = [];
      for (let i = 0; i < keys.length; i += 50) {
        const page = await Promise.all(keys.slice(i, i + 50).map((k) => stack.tasks.submitTask(submitRequest({ capability: "echo", input: { k }, idempotencyKey: k }))));
        out.push(...page.map((r) => ({ id: r.task!.id, deduplicated: r.deduplicated })));
      }
      return out;
    };
    const first = await submitAll();
    const second = await submitAll();
    expect(first.filter((r) => r.deduplicated)).toHaveLength(0);
    expect(second.every((r) => r.deduplicated)).toBe(true);
    expect(second.map((r) => r.id)).toEqual(first.map((r) => r.id));
    expect(new Set(first.map((r) => r.id)).size).toBe(1000);
    expect((await count()) - before).toBe(1000);
    // Every one of them runs, once.
    await until("the 1,000 tasks to succeed", async () => Number((await stack.sql.query(
      "SELECT count(*) AS n FROM ledger.tasks WHERE idempotency_key LIKE 'bulk-%' AND state = 'SUCCEEDED'")).rows[0].n) === 1000, 60_000);
    const { rows } = await stack.sql.query("SELECT count(*) AS n FROM ledger.history h JOIN ledger.tasks t ON t.id = h.task_id WHERE t.idempotency_key LIKE 'bulk-%' AND h.kind = 'SUCCEEDED'");
    expect(Number(rows[0].n)).toBe(1000);
  }, 120_000);

  it("refuses a used key with a different request: ALREADY_EXISTS naming the existing task", async () => {
    const { task } = await stack.tasks.submitTask(submitRequest({ capability: "echo", input: { v: 1 }, idempotencyKey: "same-key" }));
    const e = await failure(stack.tasks.submitTask(submitRequest({ capability: "echo", input: { v: 2 }, idempotencyKey: "same-key" })));
    expect([e.code, e.reason, e.metadata.task_id]).toEqual([Code.ALREADY_EXISTS, "RES_IDEMPOTENCY_KEY_REUSED", task!.id]);
    // Redis forgot the key (flushed or expired): the ledger's unique key still decides.
    const { Redis } = await import("ioredis");
    const { inject } = await import("vitest");
    const redis = new Redis(inject("redisUrl"));
    for (const k of await redis.keys("taskmesh:idem:*")) await redis.del(k);
    redis.disconnect();
    const repeat = await stack.tasks.submitTask(submitRequest({ capability: "echo", input: { v: 1 }, idempotencyKey: "same-key" }));
    expect([repeat.task!.id, repeat.deduplicated]).toEqual([task!.id, true]);
    const again = await failure(stack.tasks.submitTask(submitRequest({ capability: "echo", input: { v: 2 }, idempotencyKey: "same-key" })));
    expect([again.code, again.reason]).toEqual([Code.ALREADY_EXISTS, "RES_IDEMPOTENCY_KEY_REUSED"]);
  });

  it("answers bad input with INVALID_ARGUMENT and field violations, storing nothing", async () => {
    const before = await count();
    const unknown = await failure(stack.tasks.submitTask(submitRequest({ capability: "teleport" })));
    expect([unknown.code, unknown.reason, unknown.violations.map((v) => v.field)]).toEqual([Code.INVALID_ARGUMENT, "VAL_UNKNOWN_CAPABILITY", ["capability"]]);
    const big = await failure(stack.tasks.submitTask(submitRequest({ capability: "echo", input: { blob: "x".repeat(300 * 1024) } })));
    expect([big.code, big.reason, big.violations.map((v) => v.field)]).toEqual([Code.INVALID_ARGUMENT, "VAL_INPUT_TOO_LARGE", ["input"]]);
    const many = await failure(stack.tasks.submitTask(submitRequest({
      capability: "Echo!", idempotencyKey: "has space", maxAttempts: 0, timeout: { seconds: 0n, nanos: 1 }, priority: 12, labels: { "Bad Key": "v" },
    })));
    expect(many.code).toBe(Code.INVALID_ARGUMENT);
    expect(many.violations.map((v) => v.field)).toEqual(["capability", "idempotency_key", "max_attempts", "timeout", "priority", "labels[Bad Key]"]);
    const page = await failure(stack.tasks.listTasks({ states: [], capability: "", createdAfter: undefined, createdBefore: undefined, pageSize: 10, pageToken: "not-a-token", view: 0, workflowId: "", parentId: "" }));
    expect([page.code, page.reason]).toEqual([Code.INVALID_ARGUMENT, "VAL_INVALID_PAGE_TOKEN"]);
    const id = await failure(stack.tasks.getTask({ id: "42", view: 0 }));
    expect([id.code, id.reason]).toEqual([Code.INVALID_ARGUMENT, "VAL_INVALID_TASK_ID"]);
    const missing = await failure(stack.tasks.getTask({ id: "01900000-0000-7000-8000-000000000000", view: 0 }));
    expect([missing.code, missing.reason]).toEqual([Code.NOT_FOUND, "RES_TASK_NOT_FOUND"]);
    expect(await count()).toBe(before);
  });

  it("submits a batch with SubmitTasks: each item answered on its own, in order, nothing stored for the bad ones", async () => {
    const before = await count();
    const { results } = await stack.tasks.submitTasks({ tasks: [
      submitRequest({ capability: "echo", input: { n: 1 }, idempotencyKey: "batch-1" }),
      submitRequest({ capability: "teleport" }),
      submitRequest({ capability: "echo", input: { n: 1 }, idempotencyKey: "batch-1" }),
      submitRequest({ capability: "echo", input: { n: 2 }, idempotencyKey: "batch-1" }),
      submitRequest({ capability: "echo", input: { n: 3 } }),
    ] });
    const shown = results.map((r) => (r.result?.$case === "response" ? `ok dedup=${r.result.value.deduplicated}` : MeshError.from(fromRpcStatus(r.result!.value)).reason));
    // The two repeats of batch-1 are answered from the first (whichever of the three committed first wins the key).
    expect(shown[1]).toBe("VAL_UNKNOWN_CAPABILITY");
    expect(shown[4]).toBe("ok dedup=false");
    expect([shown[0], shown[2], shown[3]].filter((x) => x === "RES_IDEMPOTENCY_KEY_REUSED")).toHaveLength(1);
    expect([shown[0], shown[2]].sort()).toEqual(["ok dedup=false", "ok dedup=true"]);
    expect((await count()) - before).toBe(2);
    const tooMany = await failure(stack.tasks.submitTasks({ tasks: [] }));
    expect([tooMany.code, tooMany.violations.map((v) => v.field)]).toEqual([Code.INVALID_ARGUMENT, ["tasks"]]);
  });

  it("lists with filters and pages through every task exactly once", async () => {
    // Earlier tests' tasks finish first, so the set being paged does not change under the pages.
    await until("every echo task to end", async () => Number((await stack.sql.query(
      "SELECT count(*) AS n FROM ledger.tasks WHERE capability = 'echo' AND state IN ('PENDING', 'RUNNING')")).rows[0].n) === 0);
    const seen = new Set<string>();
    let pageToken = "";
    let pages = 0;
    do {
      const page = await stack.tasks.listTasks({ states: [TaskState.TASK_STATE_SUCCEEDED], capability: "echo", createdAfter: undefined, createdBefore: undefined, pageSize: 300, pageToken, view: 0, workflowId: "", parentId: "" });
      for (const t of page.tasks) {
        expect(seen.has(t.id)).toBe(false);
        expect(t.state).toBe(TaskState.TASK_STATE_SUCCEEDED);
        seen.add(t.id);
      }
      pageToken = page.nextPageToken;
      pages++;
    } while (pageToken !== "");
    const { rows } = await stack.sql.query("SELECT count(*) AS n FROM ledger.tasks WHERE state = 'SUCCEEDED' AND capability = 'echo'");
    expect(seen.size).toBe(Number(rows[0].n));
    expect(pages).toBeGreaterThan(1);
  });

  it("enforces scopes per method from the claims the edge forwards, and records the submitter", async () => {
    const as = (sub: string, scope: string): { metadata: Metadata } => {
      const metadata = new Metadata();
      metadata.set("x-jwt-payload", Buffer.from(JSON.stringify({ sub, scope })).toString("base64url"));
      metadata.set("x-forwarded-client-cert", "By=spiffe://taskmesh.local/coordinator;URI=spiffe://taskmesh.local/edge");
      return { metadata };
    };
    const before = await count();
    const denied = await failure(stack.tasks.submitTask(submitRequest({ capability: "echo" }), as("reader", "tasks:read")));
    expect([denied.code, denied.reason, denied.metadata.scope]).toEqual([Code.PERMISSION_DENIED, "AUTH_MISSING_SCOPE", "tasks:write"]);
    const batch = await failure(stack.tasks.submitTasks({ tasks: [submitRequest({ capability: "echo" })] }, as("reader", "tasks:read")));
    expect(batch.code).toBe(Code.PERMISSION_DENIED);
    expect(await count()).toBe(before);

    const edgeWithoutToken = new Metadata();
    edgeWithoutToken.set("x-forwarded-client-cert", "By=spiffe://taskmesh.local/coordinator;URI=spiffe://taskmesh.local/edge");
    const anonymous = await failure(stack.tasks.listTasks(ListTasksRequest.fromPartial({ pageSize: 1 }), { metadata: edgeWithoutToken }));
    expect([anonymous.code, anonymous.reason]).toEqual([Code.UNAUTHENTICATED, "AUTH_MISSING_TOKEN"]);

    const { task } = await stack.tasks.submitTask(submitRequest({ capability: "echo", idempotencyKey: "scoped" }), as("writer", "tasks:write"));
    expect((await stack.sql.query("SELECT created_by FROM ledger.tasks WHERE id = $1", [task!.id])).rows[0].created_by).toBe("writer");
    // Reading needs tasks:read; admin implies it.
    expect((await failure(stack.tasks.getTask(GetTaskRequest.fromPartial({ id: task!.id }), as("writer", "tasks:write")))).reason).toBe("AUTH_MISSING_SCOPE");
    expect((await stack.tasks.getTask(GetTaskRequest.fromPartial({ id: task!.id }), as("root", "admin"))).task?.id).toBe(task!.id);
    // Idempotency keys are scoped to the subject: another subject's "scoped" is another task.
    const other = await stack.tasks.submitTask(submitRequest({ capability: "echo", idempotencyKey: "scoped" }), as("someone-else", "tasks:write"));
    expect(other.task!.id).not.toBe(task!.id);
    expect(other.deduplicated).toBe(false);
  });
});

describe("coordinator: backpressure", () => {
  it("pushes back with RESOURCE_EXHAUSTED and RetryInfo once too many tasks are pending, and admits again after they drain", async () => {
    // No worker for hash at first: its tasks stay pending.
    const stack = await startStack("coord_backpressure", { coordinatorEnv: { TASKMESH_COORDINATOR_MAX_PENDING: "40" } });
    try {
    const ids: string[] = [];
    let refused: MeshError | undefined;
    for (let i = 0; i < 200 && !refused; i++) {
      try {
        ids.push((await stack.tasks.submitTask(submitRequest({ capability: "hash", input: { text: String(i) } }))).task!.id);
      } catch (error) {
        refused = MeshError.from(error);
      }
      if (i % 10 === 9) await new Promise((r) => setTimeout(r, 300)); // let the pending count refresh
    }
    expect(refused).toBeDefined();
    expect([refused!.code, refused!.reason]).toEqual([Code.RESOURCE_EXHAUSTED, "RATE_QUEUE_FULL"]);
    expect(refused!.retryAfterMs).toBeGreaterThan(0);
    expect(ids.length).toBeGreaterThanOrEqual(40);
    expect(ids.length).toBeLessThan(60);
    // A worker for hash drains them; submits are admitted again.
    await stack.startWorker({ id: "submit-hash", capabilities: ["hash"], concurrency: 16 });
    await until("the hash tasks to drain", async () => Number((await stack.sql.query("SELECT count(*) AS n FROM ledger.tasks WHERE state = 'PENDING'")).rows[0].n) === 0, 20_000);
    await until("submits to be admitted", async () => {
      try {
        await stack.tasks.submitTask(submitRequest({ capability: "hash", input: { text: "after" } }));
        return true;
      } catch {
        return false;
      }
    }, 5000);
    } finally {
      await stack.stop();
    }
  }, 60_000);
});
