import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TaskState, TaskView } from "@taskmesh/contracts/gen/taskmesh/task/v1/task";
import type { ListTasksRequest } from "@taskmesh/contracts/gen/taskmesh/ledger/v1/ledger";
import { Code } from "@taskmesh/kit";
import { connectWorker, createRequest, failure, seconds, startLedger, type LedgerHarness } from "./support.js";

describe("ledger: listing, counting and history paging", () => {
  let h: LedgerHarness;
  const ids: Record<string, string[]> = { echo: [], hash: [] };
  let middle: Date;
  const list = (r: Partial<ListTasksRequest>) => h.client.listTasks({
    states: [], capabilities: [], createdAfter: undefined, createdBefore: undefined, workerId: "", createdBy: "", pageSize: 0, pageToken: "", view: 0, workflowId: "", parentId: "", ...r,
  });

  beforeAll(async () => {
    h = await startLedger("ledger_list");
    await connectWorker(h.client, "w-list", ["echo", "hash"]);
    for (let i = 0; i < 5; i++) ids.echo!.push((await h.client.createTask(createRequest({ capability: "echo", createdBy: i % 2 ? "bob" : "alice" }))).task!.id);
    await new Promise((r) => setTimeout(r, 20));
    middle = (await h.sql.query<{ now: Date }>("SELECT now()")).rows[0]!.now;
    for (let i = 0; i < 3; i++) ids.hash!.push((await h.client.createTask(createRequest({ capability: "hash" }))).task!.id);
    const [claimed] = (await h.client.claimTasks({ workerId: "w-list", capabilities: [{ capability: "hash", maxTasks: 1 }], maxTasks: 1, leaseDuration: seconds(30) })).tasks;
    await h.client.startTask({ taskId: claimed!.id, leaseId: claimed!.lease!.leaseId, expectedSequence: undefined, leaseDuration: undefined });
    await h.client.cancelTask({ taskId: ids.echo![0]!, reason: "", actor: "alice", expectedSequence: undefined });
  });
  afterAll(async () => { await h?.stop(); });

  it("pages every task once, newest first, in the BASIC view by default", async () => {
    const seen: string[] = [];
    let token = "";
    do {
      const page = await list({ pageSize: 3, pageToken: token });
      expect(page.tasks.every((t) => t.input === undefined)).toBe(true);
      seen.push(...page.tasks.map((t) => t.id));
      token = page.nextPageToken;
    } while (token !== "");
    expect(seen).toEqual([...ids.echo!, ...ids.hash!].sort().reverse());
    expect((await list({ view: TaskView.TASK_VIEW_FULL, pageSize: 1 })).tasks[0]!.input).toEqual({ text: "hello" });
  });

  it("filters by state, capability, time range, worker and submitter", async () => {
    expect((await list({ capabilities: ["hash"] })).tasks.map((t) => t.id)).toEqual([...ids.hash!].reverse());
    expect((await list({ states: [TaskState.TASK_STATE_RUNNING] })).tasks.map((t) => t.workerId)).toEqual(["w-list"]);
    expect((await list({ states: [TaskState.TASK_STATE_CANCELLED, TaskState.TASK_STATE_RUNNING] })).tasks).toHaveLength(2);
    expect((await list({ createdAfter: middle })).tasks.map((t) => t.capability)).toEqual(["hash", "hash", "hash"]);
    expect((await list({ createdBefore: middle })).tasks.map((t) => t.capability)).toEqual(Array(5).fill("echo"));
    expect((await list({ workerId: "w-list" })).tasks).toHaveLength(1);
    expect((await list({ createdBy: "bob", capabilities: ["echo"] })).tasks).toHaveLength(2);
  });

  it("refuses bad filters and foreign page tokens", async () => {
    const token = (await list({ pageSize: 1 })).nextPageToken;
    expect(await failure(list({ capabilities: ["hash"], pageToken: token }))).toMatchObject({ code: Code.INVALID_ARGUMENT, reason: "VAL_INVALID_PAGE_TOKEN" });
    expect(await failure(list({ pageToken: "garbage" }))).toMatchObject({ reason: "VAL_INVALID_PAGE_TOKEN" });
    expect(await failure(list({ pageSize: 1001 }))).toMatchObject({ reason: "VAL_INVALID_PAGE_SIZE" });
    expect(await failure(list({ states: [42 as TaskState] }))).toMatchObject({ code: Code.INVALID_ARGUMENT, violations: [{ field: "states[0]" }] });
    expect(await failure(list({ createdAfter: middle, createdBefore: middle }))).toMatchObject({ reason: "VAL_INVALID_TIME_RANGE" });
  });

  it("counts tasks by state, in all and per capability", async () => {
    const all = await h.client.countTasks({ capabilities: [], byCapability: true, createdAfter: undefined });
    expect(all.total).toMatchObject({ pending: 6n, running: 1n, cancelled: 1n, succeeded: 0n, total: 8n });
    expect(all.total!.oldestPendingCreatedAt).toBeInstanceOf(Date);
    expect(all.byCapability.map((c) => [c.capability, c.counts!.total, c.counts!.pending])).toEqual([["echo", 5n, 4n], ["hash", 3n, 2n]]);
    const hash = await h.client.countTasks({ capabilities: ["hash"], byCapability: false, createdAfter: undefined });
    expect(hash).toMatchObject({ total: { total: 3n, running: 1n }, byCapability: [] });
    expect((await h.client.countTasks({ capabilities: [], byCapability: false, createdAfter: middle })).total!.total).toBe(3n);
  });

  it("pages a task's history and resumes after a sequence", async () => {
    const id = ids.echo![0]!;
    const first = await h.client.getTaskHistory({ taskId: id, pageSize: 1, pageToken: "" });
    expect(first.transitions.map((t) => t.sequence)).toEqual([1n]);
    const rest = await h.client.getTaskHistory({ taskId: id, pageSize: 1, pageToken: first.nextPageToken });
    expect(rest).toMatchObject({ sequence: 2n, nextPageToken: "" });
    expect(rest.transitions.map((t) => t.sequence)).toEqual([2n]);
    expect((await h.client.getTaskHistory({ taskId: id, afterSequence: 1n, pageSize: 0, pageToken: "" })).transitions.map((t) => t.sequence)).toEqual([2n]);
    expect(await failure(h.client.getTaskHistory({ taskId: ids.hash![0]!, pageSize: 1, pageToken: first.nextPageToken }))).toMatchObject({ reason: "VAL_INVALID_PAGE_TOKEN" });
    expect(await failure(h.client.getTaskHistory({ taskId: id, afterSequence: -5n, pageSize: 0, pageToken: "" }))).toMatchObject({ reason: "VAL_INVALID_SEQUENCE" });
  });
});
