import { afterEach, describe, expect, it } from "vitest";
import { WorkerServiceService } from "@taskmesh/contracts/gen/taskmesh/coordinator/v1/worker_service";
import { createClient, createLogger, type MeshClient } from "@taskmesh/kit";
import { BUILTIN_AGENTS, STARTED_AFTER_MS, Worker, defineAgent, echoAgent, sleepAgent, type WorkerOptions } from "../../../services/worker/src/index.js";
import { FakeCoordinator } from "./fake-coordinator.js";

const logger = createLogger({ service: "worker-test", level: "silent" });
const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function setup(options: Partial<WorkerOptions> = {}, fakeOptions: ConstructorParameters<typeof Object>[0] = {}) {
  const fake = await FakeCoordinator.start(fakeOptions as object);
  cleanups.push(() => fake.stop());
  const client: MeshClient<typeof WorkerServiceService> = createClient(WorkerServiceService, fake.address);
  cleanups.push(() => client.close());
  const worker = new Worker({
    client, logger, agents: [...BUILTIN_AGENTS.values()], workerId: "w-1", maxConcurrency: 4,
    backoff: { initialMs: 50, maxMs: 200 }, closeWaitMs: 300, ...options,
  });
  cleanups.push(() => worker.stop());
  worker.start();
  await worker.whenRegistered(AbortSignal.timeout(3000));
  return { fake, worker, client };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("Worker against a fake coordinator", () => {
  it("registers with its id, capabilities, concurrency, labels and version, then heartbeats", async () => {
    const { fake, worker } = await setup({
      agents: [echoAgent, defineAgent({ capability: "slow", concurrency: 1, description: "d", handler: () => ({}) })],
      maxConcurrency: 3, labels: { zone: "a" }, version: "1.2.3", name: "w@test",
    });
    const [register] = fake.all("register");
    expect(register).toEqual({
      worker: {
        workerId: "w-1", name: "w@test", maxConcurrency: 3, labels: { zone: "a" }, version: "1.2.3", weight: 1,
        capabilities: [{ name: "echo", maxConcurrency: 0, description: "returns its input" }, { name: "slow", maxConcurrency: 1, description: "d" }],
      },
      inFlight: [],
      batches: true,
    });
    expect(worker.state).toBe("registered");
    const { value: hb } = await fake.waitFor("heartbeat");
    expect(hb).toMatchObject({ inFlight: [], load: 0 });
  });

  it("runs an echo assignment: a short task sends only its result, with the output", async () => {
    const { fake } = await setup();
    await fake.session.assign({ taskId: "t-echo", capability: "echo", input: { hello: "world" } });
    const { value: result } = await fake.waitFor("result");
    expect(result).toMatchObject({ taskId: "t-echo", attempt: 1, leaseId: "lease-t-echo", outcome: { $case: "succeeded", value: { output: { hello: "world" } } } });
    await new Promise((r) => setTimeout(r, 2 * STARTED_AFTER_MS));
    const order = fake.log.map((e) => e.message.payload?.$case).filter((c) => c !== "heartbeat");
    expect(order).toEqual(["register", "result"]);
  });

  it("takes a batch of assignments, and to a coordinator that takes batches reports the results ready together in one message", async () => {
    const { fake } = await setup({}, { batches: true });
    const assignment = (taskId: string) => ({
      taskId, attempt: 1, capability: "echo", input: { id: taskId }, deadline: undefined, traceparent: "", tracestate: "", leaseId: `lease-${taskId}`,
      leaseExpiresAt: undefined, maxAttempts: 3, labels: {}, idempotencyKey: "",
    });
    await fake.session.send({ payload: { $case: "assignments", value: { assignments: ["b-1", "b-2", "b-3"].map(assignment) } } });
    const { value: batch } = await fake.waitFor("results");
    expect(batch.results.map((r) => [r.taskId, r.outcome?.$case === "succeeded" ? r.outcome.value.output : undefined])).toEqual([
      ["b-1", { id: "b-1" }], ["b-2", { id: "b-2" }], ["b-3", { id: "b-3" }],
    ]);
    expect(fake.all("result")).toEqual([]);
    // The one `results_recorded` the fake answers with lets the worker forget all three: its next heartbeat lists none.
    const after = new Date();
    await fake.waitFor("heartbeat", (h) => h.sentAt! > after && h.inFlight.length === 0);
  });

  it("to a coordinator from before batches sends each result alone", async () => {
    const { fake } = await setup();
    for (const id of ["s-1", "s-2"]) void fake.session.assign({ taskId: id, capability: "echo", input: { id } });
    await fake.waitFor("result", (r) => r.taskId === "s-2");
    expect(fake.all("result").map((r) => r.taskId).sort()).toEqual(["s-1", "s-2"]);
    expect(fake.all("results")).toEqual([]);
  });

  it("sends started once a handler has run a while, or before its first progress report", async () => {
    const quiet = defineAgent({ capability: "quiet", description: "waits 200 ms without a word", handler: async () => {
      await new Promise((r) => setTimeout(r, 200));
      return { done: true };
    } });
    const { fake } = await setup({ agents: [...BUILTIN_AGENTS.values(), quiet] });
    const assigned = Date.now();
    await fake.session.assign({ taskId: "t-quiet", capability: "quiet", input: {} });
    const { value: started } = await fake.waitFor("started", (s) => s.taskId === "t-quiet");
    expect(Date.now() - assigned).toBeGreaterThanOrEqual(STARTED_AFTER_MS - 5);
    expect(started).toMatchObject({ taskId: "t-quiet", attempt: 1, leaseId: "lease-t-quiet" });
    await fake.waitFor("result", (r) => r.taskId === "t-quiet");
    // `sleep` reports progress as it begins: `started` goes first, at once.
    await fake.session.assign({ taskId: "t-talks", capability: "sleep", input: { ms: 10 } });
    await fake.waitFor("result", (r) => r.taskId === "t-talks");
    const order = fake.log.map((e) => e.message.payload?.$case).filter((c) => c !== "heartbeat");
    expect(order).toEqual(["register", "started", "result", "started", "progress", "progress", "result"]);
  });

  it("reports failures with the handler's reason and retryability, and rejects unknown capabilities", async () => {
    const { fake } = await setup();
    await fake.session.assign({ taskId: "t-fail", capability: "fail", input: { message: "nope" } });
    await fake.session.assign({ taskId: "t-flaky", capability: "flaky", attempt: 2, input: { failTimes: 1 } });
    await fake.session.assign({ taskId: "t-x", capability: "nope" });
    expect((await fake.waitFor("result", (r) => r.taskId === "t-fail")).value.outcome).toEqual({ $case: "failed", value: { error: { reason: "BIZ_HANDLER_FAILED", message: "nope", retryable: false, details: undefined } } });
    expect((await fake.waitFor("result", (r) => r.taskId === "t-flaky")).value.outcome).toMatchObject({ $case: "succeeded", value: { output: { attempt: 2 } } });
    expect((await fake.waitFor("rejected")).value).toMatchObject({ taskId: "t-x", reason: "VAL_UNKNOWN_CAPABILITY" });
  });

  it("takes no more than its concurrency: the rest are rejected RATE_WORKER_BUSY, and a freed slot is used again", async () => {
    const { fake, worker } = await setup({ maxConcurrency: 2 });
    for (const n of [1, 2, 3, 4]) await fake.session.assign({ taskId: `t-${n}`, capability: "sleep", input: { ms: 300 } });
    await fake.waitFor("rejected", (r) => r.taskId === "t-4");
    expect(fake.all("accepted")).toEqual([]);
    expect(fake.all("rejected").map((r) => [r.taskId, r.reason])).toEqual([["t-3", "RATE_WORKER_BUSY"], ["t-4", "RATE_WORKER_BUSY"]]);
    expect(worker.running).toBe(2);
    await fake.waitFor("result", (r) => r.taskId === "t-2");
    await fake.session.assign({ taskId: "t-5", capability: "sleep", input: { ms: 1 } });
    await fake.waitFor("result", (r) => r.taskId === "t-5");
  });

  it("honours a per-capability limit", async () => {
    const limited = defineAgent({ capability: "nap", concurrency: 1, handler: (input, ctx) => sleepAgent.handler(input, ctx) });
    const { fake } = await setup({ agents: [limited, echoAgent], maxConcurrency: 4 });
    await fake.session.assign({ taskId: "n-1", capability: "nap", input: { ms: 200 } });
    await fake.session.assign({ taskId: "n-2", capability: "nap", input: { ms: 200 } });
    await fake.session.assign({ taskId: "e-1", capability: "echo" });
    expect((await fake.waitFor("rejected")).value).toMatchObject({ taskId: "n-2", reason: "RATE_WORKER_BUSY" });
    await fake.waitFor("result", (r) => r.taskId === "e-1");
  });

  it("cancel stops a running sleep, acknowledges it, and sends no result", async () => {
    const { fake, worker } = await setup();
    await fake.session.assign({ taskId: "t-long", capability: "sleep", input: { ms: 10_000 } });
    await fake.waitFor("started");
    const began = Date.now();
    await fake.session.send({ payload: { $case: "cancel", value: { taskId: "t-long", attempt: 1, reason: "BIZ_TASK_CANCELLED", message: "" } } });
    const { value: ack } = await fake.waitFor("cancelAcknowledged");
    expect(ack).toEqual({ taskId: "t-long", attempt: 1, stopped: true });
    expect(Date.now() - began).toBeLessThan(1000);
    expect(worker.running).toBe(0);
    await sleep(250);
    expect(fake.all("result")).toEqual([]);
    expect(fake.all("heartbeat").at(-1)?.inFlight).toEqual([]);
    // a cancel for a task it does not hold is acknowledged with stopped=false
    await fake.session.send({ payload: { $case: "cancel", value: { taskId: "t-none", attempt: 1, reason: "BIZ_TASK_CANCELLED", message: "" } } });
    expect((await fake.waitFor("cancelAcknowledged", (a) => a.taskId === "t-none")).value.stopped).toBe(false);
  });

  it("stops an attempt at its deadline and reports BIZ_ATTEMPT_TIMED_OUT", async () => {
    const { fake } = await setup();
    await fake.session.assign({ taskId: "t-late", capability: "sleep", input: { ms: 10_000 }, deadline: new Date(Date.now() + 150) });
    const { value } = await fake.waitFor("result");
    expect(value.outcome).toMatchObject({ $case: "failed", value: { error: { reason: "BIZ_ATTEMPT_TIMED_OUT", retryable: true } } });
  });

  it("keeps a result until result_recorded, resending it on the next stream after the stream is cut", async () => {
    const { fake } = await setup({ resultResendMs: 60_000 });
    fake.autoRecord = false;
    await fake.session.assign({ taskId: "t-keep", capability: "echo", input: { v: 1 } });
    const first = await fake.waitFor("result");
    expect(first.session.index).toBe(0);
    first.session.kill();
    const second = await fake.registered(1);
    const register = fake.all("register", second)[0]!;
    expect(register.inFlight).toEqual([{ taskId: "t-keep", attempt: 1, leaseId: "lease-t-keep", started: true }]);
    const resent = await fake.waitFor("result", (_, s) => s === second);
    expect(resent.value).toEqual(first.value);
    await second.send({ payload: { $case: "resultRecorded", value: { taskId: "t-keep", attempt: 1, accepted: true, reason: "", state: 0 } } });
    const sentBefore = fake.log.length;
    await fake.waitFor("heartbeat", (h, s) => s === second && h.inFlight.length === 0 && fake.log.length > sentBefore);
  });

  it("resends an unconfirmed result on the same stream after resultResendMs", async () => {
    const { fake } = await setup({ resultResendMs: 150 });
    fake.autoRecord = false;
    await fake.session.assign({ taskId: "t-again", capability: "echo" });
    await fake.waitFor("result");
    await sleep(500);
    expect(fake.all("result").length).toBeGreaterThanOrEqual(2);
    expect(fake.sessions).toHaveLength(1);
  });

  it("reconnects with backoff after the coordinator restarts, keeping its running tasks", async () => {
    const { fake, worker, client } = await setup();
    await fake.session.assign({ taskId: "t-survive", capability: "sleep", input: { ms: 600 } });
    await fake.waitFor("started");
    const port = fake.port;
    await fake.stop();
    await sleep(100);
    expect(worker.state).toBe("connecting");
    const again = await FakeCoordinator.start({ port });
    cleanups.push(() => again.stop());
    const session = await again.registered(0, 5000);
    expect(fake.all("register").length + again.all("register").length).toBe(2);
    expect(again.all("register", session)[0]!.inFlight).toEqual([{ taskId: "t-survive", attempt: 1, leaseId: "lease-t-survive", started: true }]);
    await worker.whenRegistered(AbortSignal.timeout(1000));
    const { value } = await again.waitFor("result", (r) => r.taskId === "t-survive", 3000);
    expect(value.outcome?.$case).toBe("succeeded");
    void client;
  });

  it("go_away with reconnect: leaves the stream at once and registers again with its tasks", async () => {
    const { fake } = await setup();
    await fake.session.assign({ taskId: "t-ga", capability: "sleep", input: { ms: 400 } });
    await fake.waitFor("started");
    await fake.session.send({ payload: { $case: "goAway", value: { reason: "coordinator shutting down", gracePeriod: { seconds: 5n, nanos: 0 }, reconnect: true } } });
    const began = Date.now();
    const second = await fake.registered(1);
    expect(Date.now() - began).toBeLessThan(500);
    expect(fake.all("register", second)[0]!.inFlight.map((t) => t.taskId)).toEqual(["t-ga"]);
    await fake.waitFor("result", (r, s) => r.taskId === "t-ga" && s === second);
  });

  it("drain: sends drain_notice, rejects new work, finishes what runs, then closes the stream and stops", async () => {
    const { fake, worker } = await setup();
    await fake.session.assign({ taskId: "t-finish", capability: "sleep", input: { ms: 300 } });
    await fake.waitFor("started");
    const drained = worker.drain(3000, "SIGTERM");
    expect(worker.state).toBe("draining");
    const { value: notice } = await fake.waitFor("drainNotice");
    expect(notice).toMatchObject({ reason: "SIGTERM", released: [] });
    expect(notice.deadline!.getTime()).toBeGreaterThan(Date.now() + 2000);
    await fake.session.assign({ taskId: "t-new", capability: "echo" });
    expect((await fake.waitFor("rejected")).value).toMatchObject({ taskId: "t-new", reason: "SYS_DRAINING" });
    await drained;
    expect(worker.state).toBe("stopped");
    expect(fake.all("result").map((r) => [r.taskId, r.outcome?.$case])).toEqual([["t-finish", "succeeded"]]);
    await sleep(50);
    expect(fake.session.ended).toBe(true);
  });

  it("drain past its grace hands back what still runs", async () => {
    const { fake, worker } = await setup();
    await fake.session.assign({ taskId: "t-stuck", capability: "sleep", input: { ms: 10_000 } });
    await fake.waitFor("started");
    const began = Date.now();
    await worker.drain(200, "SIGTERM");
    expect(Date.now() - began).toBeLessThan(1500);
    await fake.waitFor("drainNotice", (n) => n.released.length > 0, 1000);
    const notices = fake.all("drainNotice");
    expect(notices.map((n) => n.released.map((t) => t.taskId))).toEqual([[], ["t-stuck"]]);
    expect(fake.all("result")).toEqual([]);
    expect(worker.state).toBe("stopped");
  });

  it("drain past its grace while the stream is broken hands back what still runs in the next registration's drain notice", async () => {
    const { fake, worker } = await setup({ closeWaitMs: 5000 });
    await fake.session.assign({ taskId: "t-stuck", capability: "sleep", input: { ms: 10_000 } });
    await fake.waitFor("started");
    // The stream breaks; the worker connects again, but the coordinator does not take it back yet.
    fake.holdRegistered = true;
    fake.session.kill();
    await fake.registered(1);
    const drained = worker.drain(100, "SIGTERM");
    await sleep(400);
    expect(worker.state).toBe("draining");
    fake.answerHeld();
    await drained;
    const { value, session } = await fake.waitFor("drainNotice", (n) => n.released.length > 0, 1000);
    expect([session.index, value.released.map((t) => t.taskId)]).toEqual([1, ["t-stuck"]]);
    expect(fake.all("result")).toEqual([]);
    expect(worker.state).toBe("stopped");
  });

  it("go_away without reconnect drains and stops", async () => {
    const { fake, worker } = await setup();
    await fake.session.send({ payload: { $case: "goAway", value: { reason: "drained by operator", gracePeriod: { seconds: 1n, nanos: 0 }, reconnect: false } } });
    expect((await fake.waitFor("drainNotice")).value.reason).toBe("drained by operator");
    await sleep(400);
    expect(worker.state).toBe("stopped");
    expect(fake.sessions).toHaveLength(1);
  });
});
