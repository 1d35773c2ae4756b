import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TaskState, TransitionKind } from "@taskmesh/contracts/gen/taskmesh/task/v1/task";
import { WorkerState } from "@taskmesh/contracts/gen/taskmesh/worker/v1/worker";
import { Code } from "@taskmesh/kit";
import { uuidv7 } from "@taskmesh/ledger-service";
import { connectWorker, createRequest, failure, seconds, startLedger, type LedgerHarness } from "./support.js";

describe("ledger: claims, leases and workers", () => {
  let h: LedgerHarness;
  const claim = (workerId: string, capability: string, maxTasks: number, leaseS = 30) =>
    h.client.claimTasks({ workerId, capabilities: [{ capability, maxTasks }], maxTasks, leaseDuration: seconds(leaseS) });

  beforeAll(async () => {
    h = await startLedger("ledger_queue");
    for (const w of ["w-a", "w-b", "w-c"]) await connectWorker(h.client, w, ["race", "expire", "prio", "mix-a", "mix-b", "gone"]);
  });
  afterAll(async () => { await h?.stop(); });

  it("never hands one task to two concurrent claimers (FOR UPDATE SKIP LOCKED)", async () => {
    const ids = new Set<string>();
    for (let i = 0; i < 60; i++) ids.add((await h.client.createTask(createRequest({ capability: "race" }))).task!.id);
    const rounds = await Promise.all(Array.from({ length: 12 }, (_, i) => claim(i % 2 === 0 ? "w-a" : "w-b", "race", 7)));
    const claimed = rounds.flatMap((r) => r.tasks.map((t) => t.id));
    expect(new Set(claimed).size).toBe(claimed.length);
    expect(claimed.length).toBe(60);
    expect(new Set(claimed)).toEqual(ids);
    expect((await claim("w-a", "race", 10)).tasks).toEqual([]);
  });

  it("dispatches by priority, then age, within each capability's quota", async () => {
    const low = (await h.client.createTask(createRequest({ capability: "prio", priority: 0 }))).task!.id;
    const high = (await h.client.createTask(createRequest({ capability: "prio", priority: 9 }))).task!.id;
    const mid = (await h.client.createTask(createRequest({ capability: "prio", priority: 5 }))).task!.id;
    expect((await claim("w-c", "prio", 3)).tasks.map((t) => t.id)).toEqual([high, mid, low]);
    for (let i = 0; i < 3; i++) await h.client.createTask(createRequest({ capability: "mix-a" }));
    for (let i = 0; i < 3; i++) await h.client.createTask(createRequest({ capability: "mix-b" }));
    const mixed = await h.client.claimTasks({ workerId: "w-c", capabilities: [{ capability: "mix-a", maxTasks: 1 }, { capability: "mix-b", maxTasks: 5 }], maxTasks: 3, leaseDuration: seconds(30) });
    expect(mixed.tasks.map((t) => t.capability).sort()).toEqual(["mix-a", "mix-b", "mix-b"]);
    expect(mixed.tasks.every((t) => t.lease?.workerId === "w-c" && t.state === TaskState.TASK_STATE_PENDING && t.lease.attempt === 1)).toBe(true);
  });

  it("puts a task whose lease expired back, and a new claim works", async () => {
    const { task } = await h.client.createTask(createRequest({ capability: "expire" }));
    const first = (await claim("w-a", "expire", 1)).tasks[0]!;
    await h.client.startTask({ taskId: task!.id, leaseId: first.lease!.leaseId, expectedSequence: undefined, leaseDuration: undefined });
    const renewed = await h.client.renewLeases({ workerId: "w-a", leaseIds: [first.lease!.leaseId, uuidv7()], leaseDuration: seconds(60) });
    expect(renewed.renewed.map((l) => l.leaseId)).toEqual([first.lease!.leaseId]);
    expect(renewed.lost.map((l) => l.reason)).toEqual(["RES_LEASE_LOST"]);
    await h.sql.query("UPDATE ledger.tasks SET lease_expires_at = now() - interval '1 second' WHERE id = $1", [task!.id]);
    const expired = await h.client.expireLeases({ limit: 0 });
    expect(expired.reclaimed.map((r) => [r.task!.id, r.task!.state, r.transition?.kind, r.endedLease?.leaseId])).toEqual([
      [task!.id, TaskState.TASK_STATE_PENDING, TransitionKind.TRANSITION_KIND_RETRYING, first.lease!.leaseId],
    ]);
    expect(expired.reclaimed[0]!.transition!.error!.reason).toBe("SYS_LEASE_EXPIRED");
    await h.sql.query("UPDATE ledger.tasks SET next_attempt_at = now() WHERE id = $1", [task!.id]);
    const second = (await claim("w-b", "expire", 1)).tasks[0]!;
    expect(second).toMatchObject({ id: task!.id, lease: { workerId: "w-b", attempt: 2 } });
    expect(await failure(h.client.completeTask({ taskId: task!.id, leaseId: first.lease!.leaseId, output: {}, expectedSequence: undefined }))).toMatchObject({ code: Code.ABORTED, reason: "RES_LEASE_LOST" });
    // A claimed (not started) task whose lease expires just loses the lease.
    await h.sql.query("UPDATE ledger.tasks SET lease_expires_at = now() - interval '1 second' WHERE id = $1", [task!.id]);
    const unclaimed = await h.client.expireLeases({ limit: 1 });
    expect(unclaimed.reclaimed[0]).toMatchObject({ transition: undefined, task: { state: TaskState.TASK_STATE_PENDING, lease: undefined, attempts: 1 } });
    expect((await claim("w-a", "expire", 1)).tasks.map((t) => t.id)).toEqual([task!.id]);
  });

  it("assigns tasks to worker slots in pick order, skipping slots of workers not CONNECTED", async () => {
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await h.client.createTask(createRequest({ capability: "slots", priority: i === 4 ? 9 : 0 }))).task!.id);
    const assign = (workerIds: string[]) => h.client.assignTasks({ capability: "slots", workerIds, leaseDuration: seconds(30) });
    const first = await assign(["w-b", "w-unknown", "w-c", "w-b"]);
    // The highest priority first, then by age; the unknown worker's slot is left out.
    expect(first.tasks.map((t) => [t.id, t.lease?.workerId, t.state])).toEqual([
      [ids[4], "w-b", TaskState.TASK_STATE_PENDING], [ids[0], "w-c", TaskState.TASK_STATE_PENDING], [ids[1], "w-b", TaskState.TASK_STATE_PENDING],
    ]);
    // Fewer tasks than slots: the first slots get them; then nothing is due.
    expect((await assign(["w-a", "w-a", "w-c", "w-c"])).tasks.map((t) => [t.id, t.lease?.workerId])).toEqual([[ids[2], "w-a"], [ids[3], "w-a"]]);
    expect((await assign(["w-a"])).tasks).toEqual([]);
    const e = await failure(h.client.assignTasks({ capability: "", workerIds: [], leaseDuration: seconds(0) }));
    expect([e.code, e.violations.map((v) => v.field)]).toEqual([Code.INVALID_ARGUMENT, ["capability", "worker_ids", "lease_duration"]]);
  });

  it("claims only for CONNECTED workers, and validates the claim", async () => {
    expect(await failure(claim("w-unknown", "race", 1))).toMatchObject({ code: Code.FAILED_PRECONDITION, reason: "BIZ_WORKER_NOT_CONNECTED" });
    const e = await failure(h.client.claimTasks({ workerId: "w-a", capabilities: [], maxTasks: 0, leaseDuration: seconds(3600) }));
    expect(e.code).toBe(Code.INVALID_ARGUMENT);
    expect(e.violations.map((v) => v.field)).toEqual(["capabilities", "max_tasks", "lease_duration"]);
  });

  it("records sessions: heartbeats of a replaced session are ABORTED; gone workers give their leases back", async () => {
    const first = await connectWorker(h.client, "w-gone", ["gone"]);
    const second = await connectWorker(h.client, "w-gone", ["gone"]);
    const hb = (sessionId: string) => h.client.upsertWorker({
      worker: { workerId: "w-gone", name: "", capabilities: [{ name: "gone", maxConcurrency: 1, description: "" }], maxConcurrency: 1, labels: {}, version: "", weight: 1 },
      sessionId, coordinatorId: "c", state: WorkerState.WORKER_STATE_CONNECTED, newSession: false, inFlight: 1, load: 0.5,
    });
    expect(await failure(hb(first))).toMatchObject({ code: Code.ABORTED, reason: "RES_SESSION_REPLACED", metadata: { session_id: second } });
    expect((await hb(second)).worker).toMatchObject({ state: WorkerState.WORKER_STATE_CONNECTED, inFlight: 1, load: 0.5, sessionId: second });
    const { task } = await h.client.createTask(createRequest({ capability: "gone" }));
    const leased = (await claim("w-gone", "gone", 1)).tasks[0]!;
    await h.client.startTask({ taskId: task!.id, leaseId: leased.lease!.leaseId, expectedSequence: undefined, leaseDuration: undefined });
    expect(await failure(h.client.markWorkerGone({ workerId: "w-gone", sessionId: first, reason: "", expireLeases: true }))).toMatchObject({ code: Code.ABORTED });
    const gone = await h.client.markWorkerGone({ workerId: "w-gone", sessionId: second, reason: "stream closed", expireLeases: true });
    expect(gone.worker!.state).toBe(WorkerState.WORKER_STATE_GONE);
    expect(gone.reclaimed.map((r) => [r.task!.id, r.transition?.error?.reason])).toEqual([[task!.id, "SYS_WORKER_LOST"]]);
    expect(await failure(claim("w-gone", "gone", 1))).toMatchObject({ reason: "BIZ_WORKER_NOT_CONNECTED" });
    const listed = await h.client.listWorkers({ states: [WorkerState.WORKER_STATE_CONNECTED], capability: "gone", seenAfter: undefined, pageSize: 0, pageToken: "" });
    expect(listed.workers.map((w) => w.info!.workerId)).toEqual(["w-a", "w-b", "w-c"]); // not the GONE one
    const all: string[] = [];
    let token = "";
    do {
      const page = await h.client.listWorkers({ states: [], capability: "", seenAfter: undefined, pageSize: 2, pageToken: token });
      all.push(...page.workers.map((w) => w.info!.workerId));
      token = page.nextPageToken;
    } while (token !== "");
    expect(all).toEqual(["w-a", "w-b", "w-c", "w-gone"]);
    expect(await failure(h.client.markWorkerGone({ workerId: "nobody", sessionId: "s", reason: "", expireLeases: false }))).toMatchObject({ code: Code.NOT_FOUND, reason: "RES_WORKER_NOT_FOUND" });
  });
});
