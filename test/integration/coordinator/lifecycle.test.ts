import { createHash } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TaskState, TransitionKind, type TaskTransition } from "@taskmesh/contracts/gen/taskmesh/task/v1/task";
import type { WatchTaskResponse } from "@taskmesh/contracts/gen/taskmesh/coordinator/v1/task_service";
import type { ServiceError } from "@grpc/grpc-js";
import { WorkerServiceService, type ConnectRequest } from "@taskmesh/contracts/gen/taskmesh/coordinator/v1/worker_service";
import { ClusterServiceService } from "@taskmesh/contracts/gen/taskmesh/coordinator/v1/cluster_service";
import { WorkerState } from "@taskmesh/contracts/gen/taskmesh/worker/v1/worker";
import { Code, createClient, fromServiceError, type MeshError } from "@taskmesh/kit";
import { startStack, submitRequest, until, type Stack } from "./stack.js";

const second = (s: number) => ({ seconds: BigInt(s), nanos: 0 });

async function history(stack: Stack, id: string): Promise<Array<{ kind: string; attempt: number; worker_id: string }>> {
  const { rows } = await stack.sql.query("SELECT kind, attempt, worker_id FROM ledger.history WHERE task_id = $1 ORDER BY sequence", [id]);
  return rows;
}

describe("coordinator: the life of a task through real ledger, coordinator and worker processes", () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack("coord_lifecycle", { workers: [{ id: "life-w1", concurrency: 4 }, { id: "life-w2", concurrency: 4 }] });
  }, 180_000); // the processes start one after the other, each within START_MS
  afterAll(async () => { await stack?.stop(); }, 30_000);

  it("runs every built-in capability to SUCCEEDED with its output", async () => {
    const [echo, sleep, hash] = await Promise.all([
      stack.run({ capability: "echo", input: { text: "hi", n: 3 } }),
      stack.run({ capability: "sleep", input: { ms: 50 } }),
      stack.run({ capability: "hash", input: { text: "abc" } }),
    ]);
    expect([echo.state, sleep.state, hash.state]).toEqual([TaskState.TASK_STATE_SUCCEEDED, TaskState.TASK_STATE_SUCCEEDED, TaskState.TASK_STATE_SUCCEEDED]);
    expect(echo.output).toMatchObject({ text: "hi", n: 3 });
    expect(JSON.stringify(hash.output)).toContain(createHash("sha256").update("abc").digest("hex"));
    expect(echo.attempts).toBe(1);
    expect(["life-w1", "life-w2"]).toContain(echo.workerId);
    expect((await history(stack, echo.id)).map((h) => h.kind)).toEqual(["SUBMITTED", "STARTED", "SUCCEEDED"]);
    // The same timeline through the API, in pages.
    const first = await stack.tasks.getTaskHistory({ id: echo.id, pageSize: 2, pageToken: "" });
    const rest = await stack.tasks.getTaskHistory({ id: echo.id, pageSize: 2, pageToken: first.nextPageToken });
    expect([...first.transitions, ...rest.transitions].map((t) => TransitionKind[t.kind])).toEqual(["TRANSITION_KIND_SUBMITTED", "TRANSITION_KIND_STARTED", "TRANSITION_KIND_SUCCEEDED"]);
    expect(rest.nextPageToken).toBe("");
    const unknown = await stack.tasks.getTaskHistory({ id: "00000000-0000-7000-8000-000000000000", pageSize: 0, pageToken: "" }).catch((e: unknown) => e as MeshError);
    expect((unknown as MeshError).reason).toBe("RES_TASK_NOT_FOUND");
  });

  it("retries flaky until it succeeds, with the attempt count in the task and its history", async () => {
    const task = await stack.run({ capability: "flaky", input: { failTimes: 2 }, maxAttempts: 5, retryPolicy: { maxAttempts: 0, initialBackoff: { seconds: 0n, nanos: 50_000_000 }, maxBackoff: second(1), multiplier: 2 } });
    expect(task.state).toBe(TaskState.TASK_STATE_SUCCEEDED);
    expect(task.attempts).toBe(3);
    expect((await history(stack, task.id)).map((h) => `${h.kind}:${h.attempt}`)).toEqual([
      "SUBMITTED:0", "STARTED:1", "RETRYING:1", "STARTED:2", "RETRYING:2", "STARTED:3", "SUCCEEDED:3",
    ]);
  });

  it("ends fail FAILED with the agent's error, and sleep past its timeout TIMED_OUT", async () => {
    const [failed, timedOut] = await Promise.all([
      stack.run({ capability: "fail", input: { message: "no luck" }, maxAttempts: 1 }),
      stack.run({ capability: "sleep", input: { ms: 5000 }, timeout: second(1), maxAttempts: 1 }),
    ]);
    expect(failed.state).toBe(TaskState.TASK_STATE_FAILED);
    expect(failed.error).toMatchObject({ message: expect.stringContaining("no luck") });
    expect(timedOut.state).toBe(TaskState.TASK_STATE_TIMED_OUT);
    expect(timedOut.error?.reason).toBe("BIZ_ATTEMPT_TIMED_OUT");
  });

  it("cancels a running sleep: the worker is told, and the task ends CANCELLED with the worker's slot freed", async () => {
    const { task } = await stack.tasks.submitTask(submitRequest({ capability: "sleep", input: { ms: 20_000 } }));
    await until("the sleep to run", async () => (await stack.tasks.getTask({ id: task!.id, view: 0 })).task!.state === TaskState.TASK_STATE_RUNNING);
    const holder = (await stack.tasks.getTask({ id: task!.id, view: 0 })).task!.workerId;
    await until("the worker to report it in flight", async () => Number((await stack.sql.query("SELECT in_flight FROM ledger.workers WHERE worker_id = $1", [holder])).rows[0].in_flight) === 1);
    const { task: cancelled } = await stack.tasks.cancelTask({ id: task!.id, reason: "changed my mind", expectedSequence: undefined });
    expect(cancelled!.state).toBe(TaskState.TASK_STATE_CANCELLED);
    // The worker stopped the handler: its heartbeats report nothing in flight any more (the sleep had 20 s to go).
    const inFlight = async () => Number((await stack.sql.query("SELECT in_flight FROM ledger.workers WHERE worker_id = $1", [cancelled!.workerId])).rows[0].in_flight);
    await until("the worker to stop the handler", async () => (await inFlight()) === 0, 3000);
    // A second cancel changes nothing.
    const again = await stack.tasks.cancelTask({ id: task!.id, reason: "", expectedSequence: undefined });
    expect(again.task!.sequence).toBe(cancelled!.sequence);
    // Slots come back: 8 short sleeps still run at once on the two workers.
    const started = Date.now();
    const all = await Promise.all(Array.from({ length: 8 }, () => stack.run({ capability: "sleep", input: { ms: 500 } })));
    expect(all.every((t) => t.state === TaskState.TASK_STATE_SUCCEEDED)).toBe(true);
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it("ends a worker stream that does not start with a valid register, with the contract's errors", async () => {
    const client = createClient(WorkerServiceService, stack.coordinatorAddresses[0]!);
    const attempt = (first: ConnectRequest): Promise<MeshError> => new Promise((resolve, reject) => {
      const call = client.connect();
      call.on("data", () => reject(new Error("expected no answer")));
      call.on("error", (error: ServiceError) => resolve(fromServiceError(error)));
      call.write(first);
    });
    try {
      const notFirst = await attempt({ payload: { $case: "heartbeat", value: { inFlight: [], load: 0, sentAt: new Date() } } });
      expect([notFirst.code, notFirst.reason]).toEqual([Code.FAILED_PRECONDITION, "VAL_REGISTER_FIRST"]);
      const bad = await attempt({ payload: { $case: "register", value: { worker: { workerId: "", name: "", capabilities: [], maxConcurrency: 0, labels: {}, version: "", weight: 0 }, inFlight: [], batches: false } } });
      expect([bad.code, bad.reason]).toEqual([Code.INVALID_ARGUMENT, "VAL_INVALID_REGISTRATION"]);
      expect(bad.violations.map((v) => v.field)).toEqual(["register.worker.worker_id", "register.worker.capabilities", "register.worker.max_concurrency"]);
    } finally {
      client.close();
    }
  });

  it("streams a task's snapshot, transitions and progress in order with WatchTask, and resumes from a sequence", async () => {
    const { task } = await stack.tasks.submitTask(submitRequest({ capability: "sleep", input: { ms: 600 } }));
    const messages: WatchTaskResponse[] = [];
    for await (const m of stack.tasks.watchTask({ id: task!.id, afterSequence: undefined })) messages.push(m);
    expect(messages[0]!.event?.$case).toBe("snapshot");
    const transitions = messages.flatMap((m) => (m.event?.$case === "transition" ? [m.event.value] : []));
    const snapshotSeq = messages[0]!.event?.$case === "snapshot" ? messages[0]!.event.value.sequence : 0n;
    expect(transitions.map((t) => t.sequence)).toEqual(Array.from({ length: transitions.length }, (_, i) => snapshotSeq + 1n + BigInt(i)));
    expect(transitions.at(-1)!.kind).toBe(TransitionKind.TRANSITION_KIND_SUCCEEDED);
    // The sleep agent reports progress as it starts and as it ends; both arrive live, between STARTED and SUCCEEDED.
    const kinds = messages.map((m) => (m.event?.$case === "transition" ? TransitionKind[m.event.value.kind] : m.event?.$case));
    // (The first may come before the watch's subscription is in place: progress is live only, never replayed.)
    // The task may already have started when the snapshot is read (then the snapshot shows it RUNNING and no STARTED follows).
    const started = snapshotSeq >= 2n ? "" : "TRANSITION_KIND_STARTED ";
    expect(kinds.join(" ")).toMatch(new RegExp(`^snapshot ${started}(progress ){1,2}TRANSITION_KIND_SUCCEEDED$`));
    // Resuming after sequence 1 replays the rest from the history, then ends at once (the task has ended).
    const replay: TaskTransition[] = [];
    for await (const m of stack.tasks.watchTask({ id: task!.id, afterSequence: 1n })) if (m.event?.$case === "transition") replay.push(m.event.value);
    expect(replay.map((t) => t.kind)).toEqual([TransitionKind.TRANSITION_KIND_STARTED, TransitionKind.TRANSITION_KIND_SUCCEEDED]);
  });

  it("takes back a task its worker rejects: PENDING again, and dispatched anew to a worker that takes it", async () => {
    const capability = "reject-then-take";
    const client = createClient(WorkerServiceService, stack.coordinatorAddresses[0]!);
    const register = (workerId: string): ConnectRequest => ({ payload: { $case: "register", value: {
      worker: { workerId, name: workerId, capabilities: [{ name: capability, maxConcurrency: 1, description: "" }], maxConcurrency: 1, labels: {}, version: "test", weight: 1 },
      inFlight: [], batches: false,
    } } });
    /** A hand-made worker: every assignment it gets is passed to `onAssignment`, with its stream. */
    const connect = (workerId: string, onAssignment: (call: ReturnType<typeof client.connect>, a: { taskId: string; attempt: number; leaseId: string }) => void) => {
      const call = client.connect();
      call.on("data", (m: { payload?: { $case: string; value: { taskId: string; attempt: number; leaseId: string } } }) => {
        if (m.payload?.$case === "assignment") onAssignment(call, m.payload.value);
      });
      call.on("error", () => undefined);
      call.write(register(workerId));
      return call;
    };
    let rejected = 0;
    const refuser = connect("reject-w1", (call, a) => {
      rejected++;
      call.write({ payload: { $case: "rejected", value: { taskId: a.taskId, attempt: a.attempt, leaseId: a.leaseId, reason: "busy", message: "not now" } } });
      // Gone once it has refused: the task can only go to the taker.
      call.end();
    });
    try {
      await until("the refuser to be connected", async () => (await stack.sql.query("SELECT 1 FROM ledger.workers WHERE worker_id = 'reject-w1' AND state = 'CONNECTED'")).rowCount === 1);
      const { task } = await stack.tasks.submitTask(submitRequest({ capability, input: {} }));
      await until("the refusal", async () => rejected === 1);
      await until("the task to be free again", async () => (await stack.sql.query("SELECT state, lease_id FROM ledger.tasks WHERE id = $1", [task!.id])).rows[0].lease_id === null);
      expect((await stack.tasks.getTask({ id: task!.id, view: 0 })).task!.state).toBe(TaskState.TASK_STATE_PENDING);
      const taker = connect("reject-w2", (call, a) => {
        call.write({ payload: { $case: "result", value: { taskId: a.taskId, attempt: a.attempt, leaseId: a.leaseId, outcome: { $case: "succeeded", value: { output: { took: true } } }, elapsed: undefined } } });
      });
      try {
        await until("the taker to finish it", async () => (await stack.tasks.getTask({ id: task!.id, view: 0 })).task!.state === TaskState.TASK_STATE_SUCCEEDED, 10_000);
        expect((await stack.tasks.getTask({ id: task!.id, view: 0 })).task!.workerId).toBe("reject-w2");
      } finally {
        taker.end();
      }
    } finally {
      refuser.end();
      client.close();
    }
  });

  it("sends a worker that takes batches its assignments together, and records a batch of results with one confirmation message", async () => {
    const capability = "batch-take";
    const client = createClient(WorkerServiceService, stack.coordinatorAddresses[0]!);
    const received: Array<{ $case: string; value: never }> = [];
    const call = client.connect();
    call.on("data", (m: { payload?: { $case: string; value: never } }) => {
      if (m.payload) received.push(m.payload);
    });
    call.on("error", () => undefined);
    call.write({ payload: { $case: "register", value: {
      worker: { workerId: "batch-w1", name: "batch-w1", capabilities: [{ name: capability, maxConcurrency: 8, description: "" }], maxConcurrency: 8, labels: {}, version: "test", weight: 1 },
      inFlight: [], batches: true,
    } } });
    try {
      await until("registered", async () => received.some((p) => p.$case === "registered"));
      expect((received.find((p) => p.$case === "registered")!.value as { batches: boolean }).batches).toBe(true);
      await until("the worker to be connected", async () => (await stack.sql.query("SELECT 1 FROM ledger.workers WHERE worker_id = 'batch-w1' AND state = 'CONNECTED'")).rowCount === 1);
      const { results } = await stack.tasks.submitTasks({ tasks: Array.from({ length: 6 }, (_, i) => submitRequest({ capability, input: { i } })) });
      const ids = results.map((r) => (r.result?.$case === "response" ? r.result.value.task!.id : ""));
      type Assigned = { taskId: string; attempt: number; leaseId: string };
      const assigned = (): Assigned[] => received.flatMap((p) => p.$case === "assignment" ? [p.value as Assigned]
        : p.$case === "assignments" ? (p.value as { assignments: Assigned[] }).assignments : []);
      await until("six assignments", async () => assigned().length === 6);
      // Tasks leased together leave together: fewer messages than tasks.
      expect(received.filter((p) => p.$case === "assignments").length).toBeGreaterThan(0);
      expect(assigned().map((a) => a.taskId).sort()).toEqual([...ids].sort());
      call.write({ payload: { $case: "results", value: { results: assigned().map((a) => ({
        taskId: a.taskId, attempt: a.attempt, leaseId: a.leaseId, outcome: { $case: "succeeded", value: { output: { done: a.taskId } } }, elapsed: undefined,
      })) } } });
      type Recorded = { taskId: string; accepted: boolean };
      const recorded = (): Recorded[] => received.flatMap((p) => p.$case === "resultRecorded" ? [p.value as Recorded]
        : p.$case === "resultsRecorded" ? (p.value as { results: Recorded[] }).results : []);
      await until("six confirmations", async () => recorded().length === 6);
      expect(recorded().every((r) => r.accepted)).toBe(true);
      for (const id of ids) {
        const task = (await stack.tasks.getTask({ id, view: 0 })).task!;
        expect([task.state, task.output]).toEqual([TaskState.TASK_STATE_SUCCEEDED, { done: id }]);
      }
    } finally {
      call.end();
      client.close();
    }
  });

  it("lists the workers with their capabilities and slots, and each capability's queue: pending, running, the oldest due one's wait", async () => {
    const cluster = createClient(ClusterServiceService, stack.coordinatorAddresses[0]!);
    try {
      const { workers } = await cluster.listWorkers({});
      const live = workers.filter((w) => w.state === WorkerState.WORKER_STATE_CONNECTED).map((w) => w.info!.workerId);
      expect(live).toEqual(expect.arrayContaining(["life-w1", "life-w2"]));
      const w1 = workers.find((w) => w.info!.workerId === "life-w1")!;
      expect(w1.info!.maxConcurrency).toBe(4);
      expect(w1.info!.capabilities.map((c) => c.name)).toEqual(expect.arrayContaining(["echo", "sleep"]));

      // Ten sleeps on eight slots: eight run, two wait.
      const sleeps = await Promise.all(Array.from({ length: 10 }, () => stack.tasks.submitTask(submitRequest({ capability: "sleep", input: { ms: 3000 } }))));
      const states = async () => Promise.all(sleeps.map(async ({ task }) => (await stack.tasks.getTask({ id: task!.id, view: 0 })).task!.state));
      await until("eight sleeps to run", async () => (await states()).filter((s) => s === TaskState.TASK_STATE_RUNNING).length === 8);
      await new Promise((r) => setTimeout(r, 200));
      const { queues, readAt } = await cluster.listQueues({});
      expect(readAt).toBeInstanceOf(Date);
      const sleep = queues.find((q) => q.capability === "sleep")!;
      expect([sleep.pending, sleep.running]).toEqual([2, 8]);
      expect(Number(sleep.oldestPendingAge!.seconds) * 1000 + sleep.oldestPendingAge!.nanos / 1e6).toBeGreaterThanOrEqual(200);
      expect(sleep.oldestPendingSince).toBeInstanceOf(Date);
      expect(queues.map((q) => q.capability)).toEqual([...queues.map((q) => q.capability)].sort());
    } finally {
      cluster.close();
    }
  });
});
