import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify, stripVTControlCharacters } from "node:util";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { TaskServiceService, type ListTasksRequest, type SubmitTaskRequest, type WatchTaskRequest, type WatchTaskResponse } from "@taskmesh/contracts/gen/taskmesh/coordinator/v1/task_service";
import { TaskState, TransitionKind, type Task, type TaskProgressUpdate, type TaskTransition } from "@taskmesh/contracts/gen/taskmesh/task/v1/task";
import { Code, MeshError, MeshServer, createLogger, invalidArgument, notFound, unavailable } from "@taskmesh/kit";
import { serviceAddress, UsageError, type Io } from "../../../packages/cli/src/commands/rpc.js";
import { EXIT_INTERRUPTED, taskCancel, taskGet, taskList, taskSubmit, taskWatch } from "../../../packages/cli/src/commands/task.js";
import {
  listRequest, parseDurationArg, parseInput, parseLabels, parseStates, parseTime, parseWholeNumber, submitRequest, watchRequest,
} from "../../../packages/cli/src/commands/task-args.js";
import { exitCodeFor, formatAge, formatDuration, formatTask, taskRow, watchLine } from "../../../packages/cli/src/commands/task-view.js";
import { ROOT } from "../../support/processes.js";

const { PENDING, RUNNING, SUCCEEDED, FAILED, CANCELLED, TIMED_OUT, UNSPECIFIED } = {
  PENDING: TaskState.TASK_STATE_PENDING, RUNNING: TaskState.TASK_STATE_RUNNING, SUCCEEDED: TaskState.TASK_STATE_SUCCEEDED,
  FAILED: TaskState.TASK_STATE_FAILED, CANCELLED: TaskState.TASK_STATE_CANCELLED, TIMED_OUT: TaskState.TASK_STATE_TIMED_OUT,
  UNSPECIFIED: TaskState.TASK_STATE_UNSPECIFIED,
};
const ID = "0193a5f0-7c1e-7b2a-9f00-000000000001";
const T0 = new Date("2026-11-25T12:00:00.000Z");
const at = (ms: number): Date => new Date(T0.getTime() + ms);

function task(overrides: Partial<Task> = {}): Task {
  return {
    id: ID, capability: "echo", state: PENDING, input: { text: "hi" }, output: undefined, error: undefined, attempts: 0, maxAttempts: 3,
    workerId: "", traceId: "4bf92f3577b34da6a3ce929d0e0e4736", traceparent: "", idempotencyKey: "", priority: 0, labels: {},
    timeout: undefined, retryPolicy: undefined, createdAt: T0, updatedAt: T0, startedAt: undefined, finishedAt: undefined,
    nextAttemptAt: undefined, lease: undefined, progress: undefined, sequence: 1n, createdBy: "", workflowId: "", workflowStep: "", dependsOn: [], parentId: "", ...overrides,
  };
}

function transition(sequence: number, kind: TransitionKind, fromState: TaskState, toState: TaskState, extra: Partial<TaskTransition> = {}): WatchTaskResponse {
  return { event: { $case: "transition", value: {
    taskId: ID, sequence: BigInt(sequence), kind, fromState, toState, attempt: 1, workerId: "w1", leaseId: "", at: at(sequence * 1000),
    reason: "", error: undefined, traceId: "", nextAttemptAt: undefined, actor: "w1", ...extra,
  } } };
}

function progress(percent: number | undefined, message: string): WatchTaskResponse {
  const value: TaskProgressUpdate = { taskId: ID, sequence: 2n, workerId: "w1", traceId: "", progress: { percent, message, details: undefined, attempt: 1, reportedAt: at(2500) } };
  return { event: { $case: "progress", value } };
}

const snapshot = (t: Task): WatchTaskResponse => ({ event: { $case: "snapshot", value: t } });

/** An Io that keeps what a command prints, without colour codes. */
function capture(onOut?: (line: string) => void): Io & { stdout: string[]; stderr: string[] } {
  const stdout: string[] = [];
  const stderr: string[] = [];
  return {
    stdout, stderr,
    out: (line) => {
      stdout.push(...stripVTControlCharacters(line).split("\n"));
      onOut?.(stripVTControlCharacters(line));
    },
    err: (line) => stderr.push(stripVTControlCharacters(line)),
  };
}

describe("task command line: parsing, before any call", () => {
  it("reads durations with a unit, and refuses the rest naming the flag", () => {
    expect(parseDurationArg("--timeout", "30s")).toBe(30_000);
    expect(parseDurationArg("--timeout", "1.5m")).toBe(90_000);
    expect(parseDurationArg("--since", "500ms")).toBe(500);
    expect(parseDurationArg("--since", "2h")).toBe(7_200_000);
    expect(parseDurationArg("--since", "3d")).toBe(259_200_000);
    for (const bad of ["30", "abc", "-1s", "", "3w"]) {
      expect(() => parseDurationArg("--timeout", bad)).toThrow(new UsageError(`--timeout: expected a duration like 500ms, 30s, 5m, 2h or 7d, got ${JSON.stringify(bad)}`));
    }
  });

  it("reads whole numbers and ISO times", () => {
    expect(parseWholeNumber("--priority", "0")).toBe(0);
    expect(parseWholeNumber("--max-attempts", "5", 1)).toBe(5);
    expect(() => parseWholeNumber("--max-attempts", "0", 1)).toThrow(/--max-attempts: expected a whole number of at least 1, got "0"/);
    for (const bad of ["1.5", "x", "-1", "", "99999999999"]) expect(() => parseWholeNumber("--limit", bad)).toThrow(UsageError);
    expect(parseTime("--after", "2026-11-25T12:00:00Z")).toEqual(T0);
    expect(() => parseTime("--after", "yesterday")).toThrow(/--after: expected an ISO 8601 time/);
    expect(() => parseTime("--after", "2026-13-45")).toThrow(UsageError);
  });

  it("reads labels as key=value, the value as given", () => {
    expect(parseLabels(["team=infra", "query=a=b", "empty="])).toEqual({ team: "infra", query: "a=b", empty: "" });
    expect(parseLabels([])).toEqual({});
    expect(() => parseLabels(["novalue"])).toThrow(new UsageError(`--label: expected key=value, got "novalue"`));
    expect(() => parseLabels(["=v"])).toThrow(UsageError);
    expect(() => parseLabels(["a=1", "a=2"])).toThrow(/--label: a is given twice/);
  });

  it("reads state names case-insensitively, with or without TASK_STATE_, repeated or comma-separated", () => {
    expect(parseStates(["running", "TIMED_OUT", "task_state_failed,Pending", "timed-out"])).toEqual([RUNNING, TIMED_OUT, FAILED, PENDING]);
    expect(parseStates([])).toEqual([]);
    expect(() => parseStates(["runing"])).toThrow(new UsageError(`--state: unknown state "runing" (one of pending, running, succeeded, failed, cancelled, timed_out)`));
    expect(() => parseStates(["unspecified"])).toThrow(UsageError);
  });

  it("takes a JSON object as input, nothing else", () => {
    expect(parseInput('{"text":"hi","n":[1,2]}')).toEqual({ text: "hi", n: [1, 2] });
    expect(parseInput(undefined)).toBeUndefined();
    expect(() => parseInput("{bad")).toThrow(/^input: not valid JSON \(/);
    for (const bad of ["[1]", '"text"', "null", "3"]) expect(() => parseInput(bad)).toThrow(/input: expected a JSON object like '\{"text":"hi"\}'/);
  });

  it("builds the SubmitTask, ListTasks and WatchTask requests", () => {
    expect(submitRequest("echo", '{"text":"hi"}', { key: "k1", maxAttempts: "2", timeout: "1.5s", priority: "7", label: ["a=b"] })).toEqual({
      capability: "echo", input: { text: "hi" }, idempotencyKey: "k1", maxAttempts: 2, timeout: { seconds: 1n, nanos: 500_000_000 },
      priority: 7, labels: { a: "b" }, retryPolicy: undefined,
    });
    expect(submitRequest("sleep", undefined, {})).toMatchObject({ input: undefined, maxAttempts: undefined, timeout: undefined, priority: 0, labels: {} });
    expect(() => submitRequest("echo", undefined, { timeout: "soon" })).toThrow(/--timeout/);

    expect(listRequest({ state: ["running"], capability: "echo", since: "10m", limit: "50", pageToken: "t2" }, at(600_000))).toEqual({
      states: [RUNNING], capability: "echo", createdAfter: T0, createdBefore: undefined, pageSize: 50, pageToken: "t2", view: 0, workflowId: "", parentId: "",
    });
    expect(listRequest({ workflow: ID }).workflowId).toBe(ID);
    expect(listRequest({ after: "2026-11-25T12:00:00Z" }).createdAfter).toEqual(T0);
    expect(listRequest({})).toMatchObject({ states: [], capability: "", createdAfter: undefined, pageSize: 0, pageToken: "" });
    expect(() => listRequest({ since: "10m", after: "2026-11-25T12:00:00Z" })).toThrow(/--since and --after: give one or the other/);
    expect(() => listRequest({ limit: "0" })).toThrow(/--limit/);

    expect(watchRequest(ID, { afterSequence: "3" })).toEqual({ id: ID, afterSequence: 3n });
    expect(watchRequest(ID, {})).toEqual({ id: ID, afterSequence: undefined });
    expect(() => watchRequest(ID, { afterSequence: "-1" })).toThrow(/--after-sequence/);
  });

  it("finds the coordinator: --address, then TASKMESH_UPSTREAM_COORDINATOR", () => {
    expect(serviceAddress("coordinator", "10.0.0.1:7000", { TASKMESH_UPSTREAM_COORDINATOR: "127.0.0.1:1" })).toBe("10.0.0.1:7000");
    expect(serviceAddress("coordinator", undefined, { TASKMESH_UPSTREAM_COORDINATOR: "127.0.0.1:1" })).toBe("127.0.0.1:1");
    expect(serviceAddress("coordinator", undefined, { TASKMESH_UPSTREAM_COORDINATOR: "127.0.0.1:1, 127.0.0.1:2" })).toBe("ipv4:127.0.0.1:1,127.0.0.1:2");
    expect(() => serviceAddress("coordinator", undefined, { TASKMESH_UPSTREAM_COORDINATOR: "nowhere" })).toThrow(/TASKMESH_UPSTREAM_COORDINATOR: expected host:port/);
  });
});

describe("task command line: what people see", () => {
  const done = task({
    state: SUCCEEDED, attempts: 1, workerId: "w1", startedAt: at(1000), finishedAt: at(2200), output: { text: "hi" }, sequence: 3n,
    labels: { team: "infra", env: "dev" }, idempotencyKey: "k1", progress: { percent: 100, message: "done", details: undefined, attempt: 1, reportedAt: at(2100) },
  });

  it("shows a task as key/value lines, leaving out what it does not have", () => {
    expect(formatTask(done, at(300_000), "http://127.0.0.1:16686").map((l) => stripVTControlCharacters(l))).toEqual([
      `id           ${ID}`,
      "capability   echo",
      "state        SUCCEEDED",
      "attempts     1/3",
      "worker       w1",
      "created      2026-11-25T12:00:00.000Z (5m ago)",
      "started      2026-11-25T12:00:01.000Z (4m ago)",
      "finished     2026-11-25T12:00:02.200Z (4m ago)",
      "duration     1.2s",
      'input        {"text":"hi"}',
      'output       {"text":"hi"}',
      "progress     100% done",
      "sequence     3",
      "trace id     4bf92f3577b34da6a3ce929d0e0e4736",
      "trace        http://127.0.0.1:16686/trace/4bf92f3577b34da6a3ce929d0e0e4736",
      "key          k1",
      "labels       team=infra, env=dev",
    ]);
  });

  it("shows the error of a failed task, the running time of a running one, and when a pending retry is due", () => {
    const failed = task({ state: FAILED, attempts: 3, startedAt: at(0), finishedAt: at(65_000), error: { reason: "BIZ_HANDLER_FAILED", message: "boom", retryable: false, details: { code: 7 } } });
    const lines = formatTask(failed, at(70_000)).map((l) => stripVTControlCharacters(l));
    expect(lines).toContain('error        BIZ_HANDLER_FAILED: boom {"code":7}');
    expect(lines).toContain("duration     1m05s");
    expect(lines.some((l) => l.startsWith("output"))).toBe(false);
    const running = formatTask(task({ state: RUNNING, attempts: 1, startedAt: at(0) }), at(4200)).map((l) => stripVTControlCharacters(l));
    expect(running).toContain("duration     4.2s so far");
    const retry = task({ state: PENDING, attempts: 1, nextAttemptAt: at(12_000), error: { reason: "BIZ_HANDLER_FAILED", message: "flaky", retryable: true, details: undefined } });
    const retryLines = formatTask(retry, at(10_000)).map((l) => stripVTControlCharacters(l));
    expect(retryLines).toContain("next attempt 2026-11-25T12:00:12.000Z (in 2s)");
    expect(retryLines).toContain("error        BIZ_HANDLER_FAILED: flaky (retryable)");
  });

  it("makes a table row: id, capability, state, attempts, worker, age", () => {
    expect(taskRow(done, at(3 * 3600_000)).map((c) => stripVTControlCharacters(c))).toEqual([ID, "echo", "SUCCEEDED", "1/3", "w1", "3h"]);
    expect(taskRow(task(), at(42_000)).map((c) => stripVTControlCharacters(c))).toEqual([ID, "echo", "PENDING", "0/3", "-", "42s"]);
  });

  it("prints one line per watch message", () => {
    const line = (m: WatchTaskResponse): string => stripVTControlCharacters(watchLine(m));
    expect(line(snapshot(task({ state: RUNNING, attempts: 1, workerId: "w1", sequence: 2n, progress: { percent: 10, message: "warming up", details: undefined, attempt: 1, reportedAt: T0 } }))))
      .toBe("snapshot seq 2 RUNNING attempts 1/3 worker w1 10% warming up");
    expect(line(transition(1, TransitionKind.TRANSITION_KIND_SUBMITTED, UNSPECIFIED, PENDING, { attempt: 0, workerId: "" }))).toBe("seq 1 SUBMITTED →PENDING");
    expect(line(transition(3, TransitionKind.TRANSITION_KIND_STARTED, PENDING, RUNNING))).toBe("seq 3 STARTED PENDING→RUNNING attempt 1 worker w1");
    expect(line(transition(4, TransitionKind.TRANSITION_KIND_RETRYING, RUNNING, PENDING, {
      error: { reason: "BIZ_HANDLER_FAILED", message: "flaky", retryable: true, details: undefined }, nextAttemptAt: at(6000),
    }))).toBe("seq 4 RETRYING RUNNING→PENDING attempt 1 worker w1 BIZ_HANDLER_FAILED: flaky (retryable) next attempt in 2.0s");
    expect(line(transition(5, TransitionKind.TRANSITION_KIND_CANCELLED, RUNNING, CANCELLED, { workerId: "", reason: "not needed" })))
      .toBe("seq 5 CANCELLED RUNNING→CANCELLED attempt 1 (not needed)");
    expect(line(progress(42, "halfway"))).toBe("42% halfway");
    expect(line(progress(33.333, ""))).toBe("33.3%");
    expect(line(progress(undefined, "thinking"))).toBe("thinking");
  });

  it("exits 0 only for a task that SUCCEEDED", () => {
    expect(exitCodeFor(SUCCEEDED)).toBe(0);
    for (const state of [FAILED, CANCELLED, TIMED_OUT, RUNNING, PENDING, undefined]) expect(exitCodeFor(state)).toBe(1);
  });

  it("shows durations and ages for people", () => {
    expect([350, 4200, 65_000, 7_800_000].map(formatDuration)).toEqual(["350ms", "4.2s", "1m05s", "2h10m"]);
    expect([900, 59_000, 300_000, 7_200_000, 3 * 86_400_000].map(formatAge)).toEqual(["0s", "59s", "5m", "2h", "3d"]);
  });
});

/** What the fake's WatchTask sends for one task, and how the stream ends. */
interface Script {
  final: Task;
  watch: WatchTaskResponse[];
  /** @default "ok" */
  end?: "ok" | "hang" | MeshError;
}

/** An in-process TaskService on a real MeshServer, scripted per task id. */
class FakeTaskService {
  readonly submits: SubmitTaskRequest[] = [];
  readonly watches: WatchTaskRequest[] = [];
  readonly lists: ListTasksRequest[] = [];
  readonly scripts = new Map<string, Script>();
  /** WatchTask calls still running. */
  open = 0;

  private constructor(readonly server: MeshServer) {}

  get address(): string {
    return `127.0.0.1:${this.server.port}`;
  }

  static async start(): Promise<FakeTaskService> {
    const server = new MeshServer({ name: "coordinator", logger: createLogger({ service: "fake-tasks", level: "silent" }), shutdownGraceMs: 500 });
    const fake = new FakeTaskService(server);
    const find = (id: string): Script => {
      const script = fake.scripts.get(id);
      if (!script) throw notFound("RES_TASK_NOT_FOUND", `no task ${id}`);
      return script;
    };
    server.addService(TaskServiceService, {
      submitTasks: async () => { throw new Error("the CLI submits one task at a time"); },
      getTaskHistory: async () => { throw new Error("the CLI reads no history"); },
      submitWorkflow: async () => { throw new Error("not in these tests"); },
      getWorkflow: async () => { throw new Error("not in these tests"); },
      cancelWorkflow: async () => { throw new Error("not in these tests"); },
      watchWorkflow: async () => { throw new Error("not in these tests"); },
      submitTask: async (request) => {
        fake.submits.push(request);
        if (request.capability === "nope") {
          throw invalidArgument([{ field: "capability", description: 'unknown capability "nope"' }], "VAL_UNKNOWN_CAPABILITY");
        }
        if (request.idempotencyKey === "reused") {
          throw new MeshError({ code: Code.ALREADY_EXISTS, reason: "RES_IDEMPOTENCY_KEY_REUSED", message: "the key was used for another request", metadata: { task_id: ID } });
        }
        const id = request.capability;
        find(id);
        return { task: task({ id, capability: request.capability, labels: request.labels }), deduplicated: request.idempotencyKey === "dup" };
      },
      getTask: async ({ id }) => ({ task: find(id).final }),
      listTasks: async (request) => {
        fake.lists.push(request);
        return { tasks: [...fake.scripts.values()].map((s) => s.final), nextPageToken: "page-2" };
      },
      cancelTask: async ({ id }) => ({ task: { ...find(id).final, state: CANCELLED } }),
      watchTask: async (request, send, ctx) => {
        fake.watches.push(request);
        fake.open += 1;
        try {
          const script = find(request.id);
          for (const message of script.watch) await send(message);
          if (script.end === "hang") await new Promise((resolve) => ctx.signal.addEventListener("abort", resolve, { once: true }));
          else if (script.end instanceof MeshError) throw script.end;
        } finally {
          fake.open -= 1;
        }
      },
    });
    await server.listen("127.0.0.1:0");
    server.markServing();
    return fake;
  }
}

describe("task commands against an in-process TaskService", () => {
  let fake: FakeTaskService;
  const OK = "0193a5f0-7c1e-7b2a-9f00-0000000000aa";
  const BAD = "0193a5f0-7c1e-7b2a-9f00-0000000000bb";
  const STUCK = "0193a5f0-7c1e-7b2a-9f00-0000000000cc";
  const DROPPED = "0193a5f0-7c1e-7b2a-9f00-0000000000dd";

  const lifeOf = (id: string, end: TaskState, kind: TransitionKind): WatchTaskResponse[] => [
    snapshot(task({ id, sequence: 1n })),
    transition(2, TransitionKind.TRANSITION_KIND_STARTED, PENDING, RUNNING, { taskId: id }),
    progress(50, "halfway"),
    transition(3, kind, RUNNING, end, { taskId: id }),
  ];

  beforeAll(async () => {
    fake = await FakeTaskService.start();
  });
  afterAll(async () => {
    // Every command closed its calls: nothing is left for the shutdown to cut off.
    expect(await fake.server.shutdown()).toBe("drained");
  });
  beforeEach(() => {
    fake.scripts.clear();
    fake.scripts.set(OK, {
      final: task({ id: OK, state: SUCCEEDED, attempts: 1, workerId: "w1", output: { text: "hi" }, sequence: 3n, startedAt: at(1000), finishedAt: at(2000) }),
      watch: lifeOf(OK, SUCCEEDED, TransitionKind.TRANSITION_KIND_SUCCEEDED),
    });
    fake.scripts.set(BAD, {
      final: task({ id: BAD, capability: BAD, state: FAILED, attempts: 1, workerId: "w1", sequence: 3n, error: { reason: "BIZ_HANDLER_FAILED", message: "boom", retryable: false, details: undefined } }),
      watch: lifeOf(BAD, FAILED, TransitionKind.TRANSITION_KIND_FAILED),
    });
    fake.scripts.set(STUCK, { final: task({ id: STUCK, state: RUNNING, sequence: 2n }), watch: [snapshot(task({ id: STUCK, state: RUNNING, sequence: 2n }))], end: "hang" });
    fake.scripts.set(DROPPED, {
      final: task({ id: DROPPED, state: RUNNING, sequence: 2n }),
      watch: lifeOf(DROPPED, RUNNING, TransitionKind.TRANSITION_KIND_STARTED).slice(0, 2),
      end: unavailable("SYS_SHUTTING_DOWN", "the coordinator is shutting down"),
    });
  });

  it("submit prints the id, and says when the submit was deduplicated", async () => {
    const io = capture();
    // The fake names each task after its capability, so a capability picks the scripted task.
    expect(await taskSubmit(OK, '{"text":"hi"}', { address: fake.address, label: ["team=infra"], timeout: "30s", key: "dup" }, io)).toBe(0);
    expect(io.stdout).toEqual([`${OK} (deduplicated)`]);
    expect(fake.submits.at(-1)).toMatchObject({ capability: OK, input: { text: "hi" }, labels: { team: "infra" }, timeout: { seconds: 30n, nanos: 0 }, idempotencyKey: "dup" });
    const json = capture();
    expect(await taskSubmit(OK, undefined, { address: fake.address, json: true }, json)).toBe(0);
    expect(JSON.parse(json.stdout.join(""))).toMatchObject({ task: { id: OK, state: "TASK_STATE_PENDING", sequence: "1", createdAt: "2026-11-25T12:00:00.000Z" } });
  });

  it("submit --wait follows the task on stderr, prints the final task and exits 0 when it SUCCEEDED", async () => {
    const io = capture();
    expect(await taskSubmit(OK, undefined, { address: fake.address, wait: true }, io)).toBe(0);
    expect(io.stderr).toEqual([
      "snapshot seq 1 PENDING attempts 0/3",
      "seq 2 STARTED PENDING→RUNNING attempt 1 worker w1",
      "50% halfway",
      "seq 3 SUCCEEDED RUNNING→SUCCEEDED attempt 1 worker w1",
    ]);
    expect(io.stdout[0]).toBe(OK);
    expect(io.stdout).toContain("state        SUCCEEDED");
    expect(io.stdout).toContain('output       {"text":"hi"}');
    expect(fake.watches.at(-1)).toEqual({ id: OK, afterSequence: undefined });
  });

  it("submit --wait --json prints one SubmitTaskResponse with the final task, and exits 1 when it failed", async () => {
    const io = capture();
    expect(await taskSubmit(BAD, undefined, { address: fake.address, wait: true, json: true }, io)).toBe(1);
    expect(io.stdout).toHaveLength(1);
    expect(JSON.parse(io.stdout[0]!)).toEqual({ task: expect.objectContaining({
      id: BAD, state: "TASK_STATE_FAILED", sequence: "3", error: { reason: "BIZ_HANDLER_FAILED", message: "boom" },
    }) });
  });

  it("watch prints a line per message and exits 0 for SUCCEEDED, 1 for FAILED", async () => {
    const ok = capture();
    expect(await taskWatch(OK, { address: fake.address, afterSequence: "1" }, ok)).toBe(0);
    expect(ok.stdout).toEqual([
      "snapshot seq 1 PENDING attempts 0/3", "seq 2 STARTED PENDING→RUNNING attempt 1 worker w1", "50% halfway", "seq 3 SUCCEEDED RUNNING→SUCCEEDED attempt 1 worker w1",
    ]);
    expect(fake.watches.at(-1)).toEqual({ id: OK, afterSequence: 1n });
    const bad = capture();
    expect(await taskWatch(BAD, { address: fake.address }, bad)).toBe(1);
    expect(bad.stdout.at(-1)).toBe("seq 3 FAILED RUNNING→FAILED attempt 1 worker w1");
  });

  it("watch --json prints one proto3 JSON object per message", async () => {
    const io = capture();
    expect(await taskWatch(OK, { address: fake.address, json: true }, io)).toBe(0);
    const messages = io.stdout.map((l) => JSON.parse(l) as Record<string, Record<string, unknown>>);
    expect(messages.map((m) => Object.keys(m)[0])).toEqual(["snapshot", "transition", "progress", "transition"]);
    expect(messages[1]!.transition).toMatchObject({ sequence: "2", kind: "TRANSITION_KIND_STARTED", fromState: "TASK_STATE_PENDING", toState: "TASK_STATE_RUNNING", at: "2026-11-25T12:00:02.000Z" });
    expect(messages[2]!.progress).toMatchObject({ progress: { percent: 50, message: "halfway" } });
  });

  it("Ctrl-C stops a watch cleanly: the call is cancelled, the resume point printed, exit 130", async () => {
    const stop = new AbortController();
    const io = capture((line) => {
      if (line.startsWith("snapshot")) stop.abort();
    });
    expect(await taskWatch(STUCK, { address: fake.address }, io, stop.signal)).toBe(EXIT_INTERRUPTED);
    expect(io.stderr).toEqual([`stopped watching ${STUCK}; resume with: taskmesh task watch ${STUCK} --after-sequence 2`]);
    await expect.poll(() => fake.open).toBe(0);
  });

  it("a stream that breaks is reported with how to resume, exit 1", async () => {
    const io = capture();
    expect(await taskWatch(DROPPED, { address: fake.address }, io)).toBe(1);
    expect(io.stdout).toEqual(["snapshot seq 1 PENDING attempts 0/3", "seq 2 STARTED PENDING→RUNNING attempt 1 worker w1"]);
    expect(io.stderr).toEqual([
      "UNAVAILABLE (SYS_SHUTTING_DOWN): the coordinator is shutting down",
      `resume with: taskmesh task watch ${DROPPED} --after-sequence 2`,
    ]);
  });

  it("service errors print code, reason, violations and metadata, exit 1", async () => {
    const unknown = capture();
    expect(await taskSubmit("nope", undefined, { address: fake.address, wait: true }, unknown)).toBe(1);
    expect(unknown.stderr).toEqual(['INVALID_ARGUMENT (VAL_UNKNOWN_CAPABILITY): invalid capability: unknown capability "nope"', '  capability: unknown capability "nope"']);
    expect(unknown.stdout).toEqual([]);
    const reused = capture();
    expect(await taskSubmit(OK, undefined, { address: fake.address, key: "reused" }, reused)).toBe(1);
    expect(reused.stderr).toEqual(["ALREADY_EXISTS (RES_IDEMPOTENCY_KEY_REUSED): the key was used for another request", `  task_id = ${ID}`]);
    const missing = capture();
    expect(await taskGet("0193a5f0-7c1e-7b2a-9f00-0000000000ff", { address: fake.address }, missing)).toBe(1);
    expect(missing.stderr).toEqual(["NOT_FOUND (RES_TASK_NOT_FOUND): no task 0193a5f0-7c1e-7b2a-9f00-0000000000ff"]);
  });

  it("bad input fails before any call", async () => {
    const before = fake.submits.length;
    await expect(taskSubmit(OK, "{bad", { address: fake.address }, capture())).rejects.toThrow(UsageError);
    await expect(taskSubmit(OK, undefined, { address: fake.address, label: ["x"] }, capture())).rejects.toThrow(UsageError);
    expect(fake.submits.length).toBe(before);
  });

  it("get, list and cancel print the task, a table with the next page token, and the new state", async () => {
    const get = capture();
    expect(await taskGet(OK, { address: fake.address }, get)).toBe(0);
    expect(get.stdout).toContain("duration     1.0s");
    const getJson = capture();
    expect(await taskGet(OK, { address: fake.address, json: true }, getJson)).toBe(0);
    expect(JSON.parse(getJson.stdout[0]!)).toMatchObject({ task: { id: OK, state: "TASK_STATE_SUCCEEDED", attempts: 1, maxAttempts: 3, workerId: "w1" } });

    const list = capture();
    expect(await taskList({ address: fake.address, state: ["succeeded,failed"], capability: "echo" }, list)).toBe(0);
    expect(fake.lists.at(-1)).toMatchObject({ states: [SUCCEEDED, FAILED], capability: "echo" });
    const rows = list.stdout.join("\n");
    for (const word of ["id", "capability", "state", "attempts", "worker", "age", OK, BAD, "SUCCEEDED", "FAILED", "1/3"]) expect(rows).toContain(word);
    expect(list.stdout.at(-1)).toBe("next page: --page-token page-2");
    const listJson = capture();
    expect(await taskList({ address: fake.address, json: true }, listJson)).toBe(0);
    expect(JSON.parse(listJson.stdout[0]!)).toMatchObject({ tasks: expect.arrayContaining([expect.objectContaining({ id: OK })]), nextPageToken: "page-2" });

    const cancel = capture();
    expect(await taskCancel(STUCK, { address: fake.address, reason: "not needed" }, cancel)).toBe(0);
    expect(cancel.stdout).toEqual([`${STUCK} CANCELLED`]);
  });
});

describe("npx taskmesh task …, as a user runs it", () => {
  const run = promisify(execFile);
  let stateDir: string;
  beforeAll(() => {
    stateDir = mkdtempSync(join(tmpdir(), "taskmesh-task-cli-"));
  });
  afterAll(() => rmSync(stateDir, { recursive: true, force: true }));

  const taskmesh = async (...args: string[]): Promise<{ stdout: string; stderr: string; code: number }> => {
    const { TASKMESH_UPSTREAM_COORDINATOR: _ignored, ...env } = process.env;
    try {
      const { stdout, stderr } = await run(process.execPath, [join(ROOT, "scripts/taskmesh.mjs"), ...args], { env: { ...env, NO_COLOR: "1", TASKMESH_STATE_DIR: stateDir }, timeout: 20_000 });
      return { stdout, stderr, code: 0 };
    } catch (error) {
      const e = error as { stdout?: string; stderr?: string; code?: number };
      return { stdout: e.stdout ?? "", stderr: e.stderr ?? "", code: e.code ?? -1 };
    }
  };

  it("says UNAVAILABLE when the coordinator cannot be reached, exit 1; bad input exits 2 with one line; no coordinator is named", async () => {
    const [unreachable, badInput, missingArg, noCoordinator] = await Promise.all([
      taskmesh("task", "get", "not-a-uuid", "--address", "127.0.0.1:1"),
      taskmesh("task", "submit", "echo", "{bad", "--address", "127.0.0.1:1"),
      taskmesh("task", "watch"),
      taskmesh("task", "list"),
    ]);
    expect(unreachable.code).toBe(1);
    expect(unreachable.stderr).toMatch(/^UNAVAILABLE \(\w+\): /);
    expect(badInput.code).toBe(2);
    expect(badInput.stderr.trim().split("\n")).toEqual([expect.stringMatching(/^taskmesh: input: not valid JSON/)]);
    expect(missingArg.code).toBe(2);
    expect(missingArg.stderr).toMatch(/missing required argument 'id'/);
    expect(noCoordinator.code).toBe(1);
    expect(noCoordinator.stderr.trim()).toBe("taskmesh: no coordinator service: start taskmesh (npm start) or pass --address host:port");
  });
});
