import { createHash } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, createClient, MeshError, TaskState, WorkflowState, type TaskmeshClient, type Workflow } from "@taskmesh/client";
import { ROOT } from "../support/processes.js";
import { edgeApi, startUp, until, type UpRun } from "../support/up.js";

interface Status {
  processes: Array<{ name: string; pid?: number; state: string }>;
}

// Workflows as a user meets them under `taskmesh up`: HTTP/JSON through the edge, the typed client, the CLI.
describe("workflows under up: a DAG through the edge, references between tasks, failure and cancel, a coordinator killed mid-run; child tasks", { timeout: 240_000 }, () => {
  let upRun: UpRun;
  let token: string;
  let client: TaskmeshClient;
  const api = (path: string, body?: unknown) => edgeApi(upRun.edge, token, path, body);
  const json = async (response: Response): Promise<Record<string, any>> => (await response.json()) as Record<string, any>;
  /** Polls the workflow until it is no longer RUNNING (through UNAVAILABLE answers while the one coordinator restarts); answers it. */
  const finished = (id: string, ms = 60_000): Promise<Workflow> => until(`workflow ${id} to end`, ms, async () => {
    const w = await client.getWorkflow(id).catch((error: unknown) => {
      if (error instanceof MeshError && error.code === Code.UNAVAILABLE) return undefined;
      throw error;
    });
    return w === undefined || w.state === WorkflowState.WORKFLOW_STATE_RUNNING ? undefined : w;
  });

  beforeAll(async () => {
    upRun = await startUp();
    token = await upRun.token();
    client = createClient({ address: upRun.edge, token });
  }, 400_000);
  afterAll(async () => {
    client?.close();
    await upRun?.down();
  }, 60_000);

  it("over HTTP: a diamond of echo and hash runs in dependency order, each task given its dependencies' outputs; one trace, listed by workflow", async () => {
    const submitted = await api("/v1/workflows", {
      name: "diamond",
      tasks: [
        { name: "fetch", task: { capability: "echo", input: { text: "hello" } } },
        { name: "digest", dependsOn: ["fetch"], task: { capability: "hash", input: { text: { $ref: "fetch.text" } } } },
        { name: "shout", dependsOn: ["fetch"], task: { capability: "echo", input: { upper: { $ref: "fetch.text" } } } },
        { name: "join", dependsOn: ["digest", "shout"], task: { capability: "echo", input: { sha: { $ref: "digest.sha256" }, shout: { $ref: "shout" } } } },
      ],
    });
    expect(submitted.status).toBe(200);
    const { workflow } = await json(submitted);
    expect(workflow.state).toBe("WORKFLOW_STATE_RUNNING");
    expect(Object.fromEntries(workflow.nodes.map((n: { name: string; state: string }) => [n.name, n.state]))).toMatchObject({ fetch: "TASK_STATE_PENDING", join: "TASK_STATE_WAITING" });

    const done = await finished(workflow.id);
    expect(done.state).toBe(WorkflowState.WORKFLOW_STATE_SUCCEEDED);
    const join = await json(await api(`/v1/tasks/${done.nodes.find((n) => n.name === "join")!.taskId}`));
    expect(join.task.output).toEqual({ sha: createHash("sha256").update("hello").digest("hex"), shout: { upper: "hello" } });
    const listed = await json(await api(`/v1/tasks?workflowId=${workflow.id}`));
    expect(listed.tasks.map((t: { workflowStep: string }) => t.workflowStep).sort()).toEqual(["digest", "fetch", "join", "shout"]);
    expect(new Set(listed.tasks.map((t: { traceId: string }) => t.traceId))).toEqual(new Set([workflow.traceId]));
    // Each task ran only after what it depends on had finished.
    const started = Object.fromEntries(listed.tasks.map((t: { workflowStep: string; startedAt: string; finishedAt: string }) => [t.workflowStep, t]));
    expect(Date.parse(started.join.startedAt)).toBeGreaterThanOrEqual(Date.parse(started.digest.finishedAt));
    expect(Date.parse(started.digest.startedAt)).toBeGreaterThanOrEqual(Date.parse(started.fetch.finishedAt));
  });

  it("WatchWorkflow through the edge: the snapshot, each task's new states in order, and the workflow as it ended; taskmesh workflow watch exits 0", async () => {
    const chain = ["one", "two", "three"].map((name, i, all) => ({ name, capability: "sleep", input: { ms: 300 }, dependsOn: i === 0 ? [] : [all[i - 1]!] }));
    const submitted = await client.submitWorkflow(chain);
    const events: string[] = [];
    for await (const event of client.watchWorkflow(submitted.id)) {
      if (event.type === "node") events.push(`${event.node.name} ${TaskState[event.node.state]}`);
      else events.push(`${event.type} ${WorkflowState[event.workflow.state]}`);
    }
    expect(events[0]).toBe("snapshot WORKFLOW_STATE_RUNNING");
    expect(events.at(-1)).toBe("ended WORKFLOW_STATE_SUCCEEDED");
    const succeeded = events.filter((e) => e.endsWith("TASK_STATE_SUCCEEDED")).map((e) => e.split(" ")[0]);
    expect(succeeded).toEqual(["one", "two", "three"]);
    const watched = await upRun.taskmesh("workflow", "watch", submitted.id);
    expect(watched.code, watched.stderr).toBe(0);
    expect(watched.stdout).toMatch(/: SUCCEEDED; 3 succeeded/);
  });

  it("10,000 tasks in one workflow through the edge: submitted in one call, read back whole, and cancelled in one call", async () => {
    const width = 100;
    const tasks = Array.from({ length: 10_000 }, (_, k) => ({
      name: `n${k}`, capability: "sleep", input: { ms: 1 }, dependsOn: k < width ? [] : [`n${k - width}`],
    }));
    const started = Date.now();
    const submitted = await client.submitWorkflow(tasks, { name: "ten thousand", timeoutMs: 60_000 });
    console.info(`workflows: 10,000 tasks submitted through the edge in ${Date.now() - started} ms`);
    try {
      expect(submitted.nodes).toHaveLength(10_000);
      expect(submitted.counts!.waiting).toBeGreaterThanOrEqual(9_800n);
      const read = await client.getWorkflow(submitted.id, { timeoutMs: 60_000 });
      expect(read.nodes.map((n) => n.name).slice(0, 3)).toEqual(["n0", "n1", "n2"]);
    } finally {
      // Cancelled whatever happened above: its tasks would keep the workers busy for the tests after it.
      const cancelled = await client.cancelWorkflow(submitted.id, { reason: "enough", timeoutMs: 60_000 });
      expect(cancelled.state).toBe(WorkflowState.WORKFLOW_STATE_CANCELLED);
      expect(cancelled.counts!.cancelled + cancelled.counts!.succeeded).toBe(10_000n);
    }
  });

  it("a cycle, an unknown dependency or a bad reference is 400 with each field named, and nothing is created", async () => {
    const before = await json(await api("/v1/tasks?pageSize=1000"));
    const cycle = await api("/v1/workflows", { tasks: [
      { name: "a", dependsOn: ["b"], task: { capability: "echo" } }, { name: "b", dependsOn: ["a"], task: { capability: "echo" } },
    ] });
    expect(cycle.status).toBe(400);
    const body = await json(cycle);
    expect(JSON.stringify(body)).toContain("VAL_WORKFLOW_CYCLE");
    expect(JSON.stringify(body)).toContain("the dependencies make a cycle: a → b → a");
    const bad = await json(await api("/v1/workflows", { tasks: [
      { name: "a", dependsOn: ["nope"], task: { capability: "echo" } }, { name: "b", task: { capability: "no-such-agent", input: { x: { $ref: "a" } } } },
    ] }));
    expect(JSON.stringify(bad)).toMatch(/tasks\[0\]\.depends_on\[0\].*tasks\[1\]\.task\.input.*tasks\[1\]\.task\.capability/s);
    expect((await json(await api("/v1/tasks?pageSize=1000"))).tasks.length).toBe(before.tasks.length);
  });

  it("FAIL_FAST: a task that fails cancels the rest; CONTINUE runs what does not depend on it", async () => {
    const tasks = (failing: string) => [
      { name: "broken", capability: "fail", input: { message: failing } },
      { name: "after-broken", capability: "echo", dependsOn: ["broken"] },
      { name: "nap", capability: "sleep", input: { ms: 1500 } },
      { name: "after-nap", capability: "echo", dependsOn: ["nap"] },
    ];
    const fast = await finished((await client.submitWorkflow(tasks("fast"))).id);
    expect(fast.state).toBe(WorkflowState.WORKFLOW_STATE_FAILED);
    expect(Object.fromEntries(fast.nodes.map((n) => [n.name, TaskState[n.state]]))).toEqual({
      broken: "TASK_STATE_FAILED", "after-broken": "TASK_STATE_CANCELLED", nap: "TASK_STATE_CANCELLED", "after-nap": "TASK_STATE_CANCELLED",
    });
    const going = await finished((await client.submitWorkflow(tasks("continue"), { failurePolicy: "continue" })).id);
    expect(going.state).toBe(WorkflowState.WORKFLOW_STATE_FAILED);
    expect(Object.fromEntries(going.nodes.map((n) => [n.name, TaskState[n.state]]))).toEqual({
      broken: "TASK_STATE_FAILED", "after-broken": "TASK_STATE_CANCELLED", nap: "TASK_STATE_SUCCEEDED", "after-nap": "TASK_STATE_SUCCEEDED",
    });
  });

  it("taskmesh workflow: submit --wait prints every task SUCCEEDED; cancel stops a running task, cancels what waits, and frees the worker", async () => {
    const file = join(upRun.stateDir, "workflow.json");
    writeFileSync(file, JSON.stringify({ tasks: [{ name: "one", task: { capability: "echo", input: { n: 1 } } }, { name: "two", dependsOn: ["one"], task: { capability: "echo", input: { from: { $ref: "one.n" } } } }] }));
    const waited = await upRun.taskmesh("workflow", "submit", file, "--wait");
    expect(waited.code, waited.stderr).toBe(0);
    expect(waited.stdout).toMatch(/: SUCCEEDED; 2 succeeded/);
    expect(waited.stdout).toMatch(/two\s+SUCCEEDED\s+echo\s+\S+\s+after one/);

    writeFileSync(file, JSON.stringify({ tasks: [{ name: "nap", task: { capability: "sleep", input: { ms: 120000 } } }, { name: "later", dependsOn: ["nap"], task: { capability: "echo" } }] }));
    const id = (await upRun.taskmesh("workflow", "submit", file)).stdout.trim();
    const nap = await until("the nap to run", 20_000, async () => {
      const node = (await client.getWorkflow(id)).nodes.find((n) => n.name === "nap")!;
      return node.state === TaskState.TASK_STATE_RUNNING ? node : undefined;
    });
    const cancelled = await upRun.taskmesh("workflow", "cancel", id, "--reason", "changed my mind");
    expect(cancelled.code, cancelled.stderr).toBe(0);
    expect(cancelled.stdout).toMatch(/: CANCELLED;/);
    expect((await client.get(nap.taskId)).state).toBe(TaskState.TASK_STATE_CANCELLED);
    // The worker was told to stop the sleep: its slots are free for new tasks at once.
    const quick = await client.submit("echo", { after: "cancel" });
    expect((await client.result(quick.id)).state).toBe(TaskState.TASK_STATE_SUCCEEDED);
  });

  it("SIGKILL of the coordinator while a 201-task DAG runs: every task runs once and succeeds, and the last gets every output", async () => {
    const layers = 2;
    const width = 100;
    const tasks = [
      ...Array.from({ length: width }, (_, i) => ({ name: `l0-${i}`, capability: "sleep", input: { ms: 50 } })),
      ...Array.from({ length: (layers - 1) * width }, (_, k) => {
        const layer = 1 + Math.floor(k / width);
        const i = k % width;
        return { name: `l${layer}-${i}`, capability: "echo", input: { i, from: { $ref: `l${layer - 1}-${i}` } }, dependsOn: [`l${layer - 1}-${i}`] };
      }),
      {
        name: "join", capability: "echo", dependsOn: Array.from({ length: width }, (_, i) => `l${layers - 1}-${i}`),
        input: Object.fromEntries(Array.from({ length: width }, (_, i) => [`r${i}`, { $ref: `l${layers - 1}-${i}.i` }])),
      },
    ];
    const submitted = await client.submitWorkflow(tasks);
    expect(submitted.nodes).toHaveLength(201);
    const status = JSON.parse((await upRun.taskmesh("status", "--json")).stdout) as Status;
    const coordinator = status.processes.find((p) => p.name === "coordinator-0")!;
    await until("some tasks to finish", 30_000, async () => ((await client.getWorkflow(submitted.id)).counts!.succeeded >= 20n ? true : undefined));
    process.kill(coordinator.pid!, "SIGKILL");

    const done = await finished(submitted.id, 120_000);
    expect(done.state).toBe(WorkflowState.WORKFLOW_STATE_SUCCEEDED);
    expect(done.counts!.succeeded).toBe(201n);
    const join = await client.get(done.nodes.find((n) => n.name === "join")!.taskId);
    expect(join.output).toEqual(Object.fromEntries(Array.from({ length: width }, (_, i) => [`r${i}`, i])));
    // Run once: no task was started twice (a result lost with the coordinator would have been run again).
    const startedTwice: string[] = [];
    for (const node of done.nodes) {
      const history = await json(await api(`/v1/tasks/${node.taskId}/history`));
      const starts = history.transitions.filter((t: { kind: string }) => t.kind === "TRANSITION_KIND_STARTED").length;
      if (starts > 1) startedTwice.push(node.name);
    }
    expect(startedTwice).toEqual([]);
  });

  /** The kinds of a task's transitions, in order. */
  const kinds = async (id: string): Promise<string[]> => (await json(await api(`/v1/tasks/${id}/history`))).transitions.map((t: { kind: string }) => t.kind.replace("TRANSITION_KIND_", ""));
  const childrenOf = async (id: string) => (await client.list({ parentId: id, pageSize: 1000, view: "full" })).tasks;

  it("examples/agents/director.ts: one summarize child per paragraph; the director parks while they run, resumes, and joins their answers", async () => {
    const started = await upRun.taskmesh("worker", "-d", join(ROOT, "examples/agents/director.ts"));
    expect(started.code, started.stderr).toBe(0);
    const text = "Alpha is first. It leads.\n\nBeta comes second.\n\nGamma ends it all. Really.";
    const task = await client.submit("director", { text });
    const done = await client.result(task.id);
    expect(TaskState[done.state]).toBe("TASK_STATE_SUCCEEDED");
    expect(done.output).toEqual({ parts: 3, words: 13, summary: "Alpha is first. Beta comes second. Gamma ends it all." });
    const kids = await childrenOf(task.id);
    expect(kids.map((k) => [k.workflowStep, TaskState[k.state], k.traceId]).sort()).toEqual([
      ["part-0", "TASK_STATE_SUCCEEDED", task.traceId], ["part-1", "TASK_STATE_SUCCEEDED", task.traceId], ["part-2", "TASK_STATE_SUCCEEDED", task.traceId],
    ]);
    // It held no slot while it waited: parked, then ready, then a second attempt that found its children ended.
    expect(await kinds(task.id)).toEqual(["SUBMITTED", "STARTED", "PARKED", "READY", "STARTED", "SUCCEEDED"]);
    expect(done.attempts).toBe(1);
  });

  it("a fan-out of 1,000 children from one parent completes, each child run once", async () => {
    const folder = mkdtempSync(join(tmpdir(), "taskmesh-fanout-"));
    writeFileSync(join(folder, "fanout.ts"), `import { defineAgent } from "@taskmesh/worker";
export default defineAgent({ capability: "fanout", handler: async (input: Record<string, unknown>, ctx) => {
  const children = Array.from({ length: Number(input.n) }, (_, i) => ctx.spawn("echo", { i }, { step: \`echo-\${i}\` }));
  const outputs = await ctx.all(children);
  return { sum: outputs.reduce((s, o) => s + Number(o.i), 0) };
} });
`);
    const started = await upRun.taskmesh("worker", "-d", join(folder, "fanout.ts"));
    expect(started.code, started.stderr).toBe(0);
    const task = await client.submit("fanout", { n: 1000 });
    const done = await client.result(task.id);
    expect(TaskState[done.state]).toBe("TASK_STATE_SUCCEEDED");
    expect(done.output).toEqual({ sum: (999 * 1000) / 2 });
    const kids = await childrenOf(task.id);
    expect(kids).toHaveLength(1000);
    expect(kids.every((k) => k.state === TaskState.TASK_STATE_SUCCEEDED && k.attempts === 1)).toBe(true);
  });

  it("SIGKILL of the parent's worker while it waits and of the coordinator while its children finish: every child runs once, the parent succeeds once with every answer", async () => {
    const folder = mkdtempSync(join(tmpdir(), "taskmesh-napper-"));
    writeFileSync(join(folder, "napper.ts"), `import { defineAgent } from "@taskmesh/worker";
export default defineAgent({ capability: "napper", handler: async (_input: Record<string, unknown>, ctx) => {
  const children = Array.from({ length: 20 }, (_, i) => ctx.spawn("sleep", { ms: 2000 }, { step: \`nap-\${i}\` }));
  const outputs = await ctx.all(children);
  return { naps: outputs.length };
} });
`);
    const started = await upRun.taskmesh("worker", "-d", join(folder, "napper.ts"));
    expect(started.code, started.stderr).toBe(0);
    const task = await client.submit("napper", {});
    await until("the napper to park", 20_000, async () => ((await client.get(task.id)).state === TaskState.TASK_STATE_WAITING ? true : undefined));
    const status = JSON.parse((await upRun.taskmesh("status", "--json")).stdout) as Status;
    const pid = (name: string): number => status.processes.find((p) => p.name === name)!.pid!;
    process.kill(pid("agent-napper"), "SIGKILL");
    await new Promise((r) => setTimeout(r, 800));
    process.kill(pid("coordinator-0"), "SIGKILL");
    const done = await until("the napper to end", 90_000, async () => {
      const t = await client.get(task.id).catch((error: unknown) => {
        if (error instanceof MeshError && error.code === Code.UNAVAILABLE) return undefined;
        throw error;
      });
      return t && t.state !== TaskState.TASK_STATE_WAITING && t.state !== TaskState.TASK_STATE_PENDING && t.state !== TaskState.TASK_STATE_RUNNING ? t : undefined;
    });
    expect(TaskState[done.state]).toBe("TASK_STATE_SUCCEEDED");
    expect(done.output).toEqual({ naps: 20 });
    const kids = await childrenOf(task.id);
    expect(kids).toHaveLength(20);
    const startedTwice: string[] = [];
    for (const kid of kids) if ((await kinds(kid.id)).filter((k) => k === "STARTED").length > 1) startedTwice.push(kid.workflowStep);
    expect(startedTwice).toEqual([]);
    expect((await kinds(task.id)).filter((k) => k === "SUCCEEDED")).toHaveLength(1);
  });
});
