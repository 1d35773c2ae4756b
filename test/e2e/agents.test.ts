import { execFile, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TaskState, createClient as createTaskmeshClient } from "@taskmesh/client";
import { ROOT } from "@taskmesh/local/provision/versions";
import { edgeApi, startUp, until, type UpRun } from "../support/up.js";

const run = promisify(execFile);

interface Task {
  id: string;
  state: string;
  workerId: string;
  output?: Record<string, unknown>;
  error?: { reason: string; message: string };
}

// Agents of a user's own, as a user runs them: a module in a folder outside
// the repository, importing @taskmesh/worker, run with `taskmesh worker`
// against `taskmesh up`; its capability submitted through the edge.
describe("agents and programs of your own under up: taskmesh worker, @taskmesh/worker, @taskmesh/client", { timeout: 240_000 }, () => {
  let upRun: UpRun;
  let token: string;
  let folder: string;
  const api = (path: string, body?: unknown) => edgeApi(upRun.edge, token, path, body);
  const task = async (id: string): Promise<Task> => ((await (await api(`/v1/tasks/${id}`)).json()) as { task: Task }).task;
  const finished = (id: string): Promise<Task> => until(`task ${id} to finish`, 30_000, async () => {
    const t = await task(id);
    return ["TASK_STATE_SUCCEEDED", "TASK_STATE_FAILED"].includes(t.state) ? t : undefined;
  });
  const processes = async (): Promise<string[]> => (JSON.parse((await upRun.taskmesh("status", "--json")).stdout) as { processes: Array<{ name: string }> }).processes.map((p) => p.name);

  beforeAll(async () => {
    folder = mkdtempSync(join(tmpdir(), "my-agents-"));
    writeFileSync(join(folder, "my-agents.ts"), `import { AgentError, defineAgent, type AgentContext } from "@taskmesh/worker";

export default [
  defineAgent({
    capability: "shout",
    description: "upper-cases input.text",
    handler: (input: Record<string, unknown>, ctx: AgentContext) => {
      if (typeof input.text !== "string") throw new AgentError("text must be a string", { reason: "VAL_TEXT_REQUIRED", retryable: false });
      return { text: input.text.toUpperCase(), attempt: ctx.attempt };
    },
  }),
  defineAgent({
    capability: "count-words",
    handler: async (input: Record<string, unknown>, ctx: AgentContext) => {
      ctx.progress(50, "counting");
      return { words: String(input.text).split(/\\s+/).filter(Boolean).length };
    },
  }),
];
`);
    writeFileSync(join(folder, "not-agents.ts"), "export default { capability: \"shout\", handler: () => ({}) };\n");
    mkdirSync(join(folder, "at-start"));
    writeFileSync(join(folder, "at-start", "greet.ts"), `import { defineAgent } from "@taskmesh/worker";
export default defineAgent({ capability: "greet", handler: (input: Record<string, unknown>) => ({ greeting: \`hello, \${String(input.name)}\` }) });
`);
    upRun = await startUp(["--agents", join(folder, "at-start")]);
    token = await upRun.token();
  }, 400_000); // waiting for the lock included

  afterAll(async () => {
    await upRun?.down();
    if (folder) rmSync(folder, { recursive: true, force: true });
  }, 60_000);

  it("runs a module's agents on a new worker with its own sidecar; their capabilities are submittable at once, through the edge over HTTP and gRPC", async () => {
    const started = await upRun.taskmesh("worker", "--detach", join(folder, "my-agents.ts"));
    expect(started.code, started.stderr).toBe(0);
    expect(started.stdout).toContain(`agent-my-agents runs the agents of ${join(folder, "my-agents.ts")}`);
    expect(await processes()).toEqual(expect.arrayContaining(["agent-my-agents", "agent-my-agents-sidecar"]));

    const submitted = await api("/v1/tasks", { capability: "shout", input: { text: "hello, agents" } });
    expect(submitted.status, await submitted.clone().text()).toBe(200);
    const shout = await finished(((await submitted.json()) as { task: Task }).task.id);
    expect(shout).toMatchObject({ state: "TASK_STATE_SUCCEEDED", workerId: "agent-my-agents", output: { text: "HELLO, AGENTS", attempt: 1 } });

    // gRPC through the edge, as grpcurl sends it.
    const { stdout } = await run("grpcurl", ["-plaintext", "-H", `authorization: Bearer ${token}`, "-d", JSON.stringify({ capability: "count-words", input: { text: "one two three" } }),
      upRun.edge, "taskmesh.coordinator.v1.TaskService/SubmitTask"], { timeout: 20_000 });
    const counted = await finished((JSON.parse(stdout) as { task: { id: string } }).task.id);
    expect(counted).toMatchObject({ state: "TASK_STATE_SUCCEEDED", output: { words: 3 } });

    // The agent's own refusal reaches the task as it said it.
    const bad = await finished(((await (await api("/v1/tasks", { capability: "shout", input: { text: 42 } })).json()) as { task: Task }).task.id);
    expect(bad).toMatchObject({ state: "TASK_STATE_FAILED", error: { reason: "VAL_TEXT_REQUIRED", message: "text must be a string" } });

    const stopped = await upRun.taskmesh("worker", "--stop", "agent-my-agents");
    expect(stopped.code, stopped.stderr).toBe(0);
    expect(await processes()).not.toContain("agent-my-agents");
  });

  it("up --agents <folder> runs each module in it on a worker of its own from the start", async () => {
    expect(await processes()).toEqual(expect.arrayContaining(["agent-greet", "agent-greet-sidecar"]));
    const greeted = await finished(((await (await api("/v1/tasks", { capability: "greet", input: { name: "world" } })).json()) as { task: Task }).task.id);
    expect(greeted).toMatchObject({ state: "TASK_STATE_SUCCEEDED", workerId: "agent-greet", output: { greeting: "hello, world" } });
    const refused = await upRun.taskmesh("up", "-d", "--agents", join(folder, "nowhere"));
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain("--agents: no file or folder at");
  });

  it("refuses a module that exports no agents, saying why, and leaves nothing of it running", async () => {
    const refused = await upRun.taskmesh("worker", join(folder, "not-agents.ts"));
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain("its default export is not an agent");
    expect((await processes()).filter((name) => name.startsWith("agent-not-agents"))).toEqual([]);
    const missing = await upRun.taskmesh("worker", join(folder, "nowhere.ts"));
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("no agent module at");
  });

  it("@taskmesh/client, installed into a program's own folder: submit, result, watch, list, cancel, typed errors, deadlines and AbortSignal, through the edge", async () => {
    const app = mkdtempSync(join(tmpdir(), "my-program-"));
    try {
      await run("npm", ["install", "--offline", "--no-audit", "--no-fund", join(ROOT, "packages/client")], { cwd: app, timeout: 120_000 });
      writeFileSync(join(app, "main.ts"), `import { Code, MeshError, TaskState, createClient, type WatchEvent } from "@taskmesh/client";

const [address, token] = process.argv.slice(2) as [string, string];
const taskmesh = createClient({ address, token });
const out: Record<string, unknown> = {};
const errorOf = async (work: () => Promise<unknown>) => {
  try {
    await work();
    return "no error";
  } catch (error) {
    if (!(error instanceof MeshError)) throw error;
    return { code: Code[error.code], reason: error.reason, fields: error.violations.map((v) => v.field) };
  }
};

const echo = await taskmesh.submit("echo", { text: "from my program" }, { idempotencyKey: "my-program-1" });
out.submitted = TaskState[echo.state];
const done = await taskmesh.result(echo.id);
out.result = { state: TaskState[done.state], output: done.output };
out.again = (await taskmesh.submit("echo", { text: "from my program" }, { idempotencyKey: "my-program-1" })).id === echo.id;
out.listed = (await taskmesh.list({ capability: "echo", states: [TaskState.TASK_STATE_SUCCEEDED], pageSize: 1000 })).tasks.some((t) => t.id === echo.id);

const sleep = await taskmesh.submit("sleep", { ms: 60000 });
const seen: string[] = [];
const watching = (async () => {
  for await (const event of taskmesh.watch(sleep.id) as AsyncIterable<WatchEvent>) {
    seen.push(event.type === "snapshot" ? "snapshot" : event.type === "transition" ? TaskState[event.transition.toState] : "progress");
  }
})();
await new Promise((r) => setTimeout(r, 1000));
out.cancelled = TaskState[(await taskmesh.cancel(sleep.id, { reason: "not needed" })).state];
await watching;
out.watched = seen;

out.unknownCapability = await errorOf(() => taskmesh.submit("no-such-agent", {}));
out.badId = await errorOf(() => taskmesh.get("not-a-task-id"));
out.noToken = await errorOf(() => createClient({ address }).get(echo.id));
const controller = new AbortController();
out.deadline = await errorOf(() => taskmesh.list({ timeoutMs: 0 }));
const longSleep = await taskmesh.submit("sleep", { ms: 60000 });
const waiting = errorOf(() => taskmesh.result(longSleep.id, { signal: controller.signal }));
setTimeout(() => controller.abort(), 300);
out.abortedWatch = await waiting;
await taskmesh.cancel(longSleep.id);
taskmesh.close();
console.log(JSON.stringify(out));
`);
      const { stdout } = await run(process.execPath, ["main.ts", upRun.edge, token], { cwd: app, timeout: 60_000 });
      expect(JSON.parse(stdout)).toEqual({
        submitted: "TASK_STATE_PENDING",
        result: { state: "TASK_STATE_SUCCEEDED", output: { text: "from my program" } },
        again: true,
        listed: true,
        cancelled: "TASK_STATE_CANCELLED",
        watched: expect.arrayContaining(["snapshot", "TASK_STATE_CANCELLED"]),
        unknownCapability: { code: "INVALID_ARGUMENT", reason: expect.stringMatching(/^VAL_/), fields: ["capability"] },
        badId: { code: "INVALID_ARGUMENT", reason: expect.stringMatching(/^VAL_/), fields: ["id"] },
        noToken: { code: "UNAUTHENTICATED", reason: expect.stringMatching(/^AUTH_/), fields: [] },
        deadline: { code: "DEADLINE_EXCEEDED", reason: "SYS_DEADLINE_EXCEEDED", fields: [] },
        abortedWatch: { code: "CANCELLED", reason: expect.stringMatching(/^SYS_/), fields: [] },
      });
    } finally {
      rmSync(app, { recursive: true, force: true });
    }
  });

  it("examples/agents: fetch-json retries a failing API within the attempt, refuses a 404 without retrying, and stops a call in flight when cancelled; word-stats reports progress", async () => {
    let hits = 0;
    let hung = 0;
    let hungClosed = 0;
    const server = createServer((request, response) => {
      if (request.url === "/flaky") {
        hits++;
        if (hits <= 2) return void response.writeHead(503).end("busy");
        return void response.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ answer: 42 }));
      }
      if (request.url === "/hang") {
        hung++;
        request.socket.once("close", () => hungClosed++);
        return; // never answers
      }
      response.writeHead(404).end("no such thing");
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const client = createTaskmeshClient({ address: upRun.edge, token });
    try {
      for (const example of ["fetch-json.ts", "word-stats.ts"]) {
        const started = await upRun.taskmesh("worker", "--detach", join(ROOT, "examples/agents", example));
        expect(started.code, started.stderr).toBe(0);
      }
      const flaky = await client.result((await client.submit("fetch-json", { url: `${base}/flaky` })).id);
      expect(flaky).toMatchObject({ state: TaskState.TASK_STATE_SUCCEEDED, attempts: 1, output: { status: 200, body: { answer: 42 } } });
      expect(hits).toBe(3);

      const missing = await client.result((await client.submit("fetch-json", { url: `${base}/missing` })).id);
      expect(missing).toMatchObject({ state: TaskState.TASK_STATE_FAILED, attempts: 1, error: { reason: "EXT_UPSTREAM_REJECTED", retryable: false } });

      const hanging = await client.submit("fetch-json", { url: `${base}/hang` });
      await until("the hanging call to reach the API", 20_000, async () => (hung > 0 ? true : undefined));
      expect((await client.cancel(hanging.id, { reason: "enough" })).state).toBe(TaskState.TASK_STATE_CANCELLED);
      await until("the worker to drop the call in flight", 20_000, async () => (hungClosed > 0 ? true : undefined));

      const text = Array.from({ length: 3_500 }, (_, i) => `line ${i} of the text`).join("\n");
      const stats = await client.submit("word-stats", { text });
      const progress: number[] = [];
      for await (const event of client.watch(stats.id)) if (event.type === "progress") progress.push(event.progress.progress?.percent ?? -1);
      expect(progress.length, "progress reports seen").toBeGreaterThan(0);
      expect(progress.at(-1)).toBe(100);
      expect((await client.get(stats.id)).output).toMatchObject({ lines: 3_500, words: 17_500, distinct: 3_504 });
    } finally {
      client.close();
      server.close();
      for (const name of ["agent-fetch-json", "agent-word-stats"]) await upRun.taskmesh("worker", "--stop", name);
    }
  });

  it("examples/python-worker: a worker written in Python (grpcio, stubs from proto/) registers its own capability behind its own sidecar and runs it", async () => {
    const started = await upRun.taskmesh("worker", "--detach", join(ROOT, "examples/python-worker/worker.py"));
    expect(started.code, started.stderr).toBe(0);
    expect(started.stdout).toContain("agent-worker runs the agents of");
    try {
      const reversed = await finished(((await (await api("/v1/tasks", { capability: "py-reverse", input: { text: "taskmesh" } })).json()) as { task: Task }).task.id);
      expect(reversed).toMatchObject({ state: "TASK_STATE_SUCCEEDED", workerId: "agent-worker", output: { text: "hsemksat", language: "python" } });
      const refused = await finished(((await (await api("/v1/tasks", { capability: "py-reverse", input: {} })).json()) as { task: Task }).task.id);
      expect(refused).toMatchObject({ state: "TASK_STATE_FAILED", error: { reason: "VAL_TEXT_REQUIRED", message: "text must be a string" } });
    } finally {
      const stopped = await upRun.taskmesh("worker", "--stop", "agent-worker");
      expect(stopped.code, stopped.stderr).toBe(0);
    }
  }, 300_000);

  it("@taskmesh/worker's Worker in a program's own process: mTLS as the worker identity to a coordinator's sidecar, its capability run there, drained on SIGTERM", async () => {
    const app = mkdtempSync(join(tmpdir(), "my-worker-"));
    const status = JSON.parse((await upRun.taskmesh("status", "--json")).stdout) as { processes: Array<{ name: string; ports?: Record<string, number> }> };
    const inbound = status.processes.find((p) => p.name === "coordinator-0-sidecar")?.ports?.["inbound"];
    const certs = JSON.parse((await upRun.taskmesh("certs", "--json")).stdout) as { caPath: string; identities: Array<{ name: string; certPath: string; keyPath: string }> };
    const identity = certs.identities.find((i) => i.name === "worker")!;
    let program: ReturnType<typeof spawn> | undefined;
    try {
      await run("npm", ["install", "--offline", "--no-audit", "--no-fund", join(ROOT, "packages/worker")], { cwd: app, timeout: 120_000 });
      writeFileSync(join(app, "main.ts"), `import { readFileSync } from "node:fs";
import { Worker, defineAgent } from "@taskmesh/worker";

const [address, ca, cert, key] = process.argv.slice(2) as [string, string, string, string];
const double = defineAgent({ capability: "sdk-double", handler: (input: Record<string, unknown>) => ({ doubled: Number(input.n) * 2, pid: process.pid }) });
const worker = new Worker({ address, agents: [double], workerId: "my-sdk-worker", logLevel: "warn",
  tls: { ca: readFileSync(ca), cert: readFileSync(cert), key: readFileSync(key) } });
await worker.start();
console.log("registered");
process.once("SIGTERM", () => void worker.drain(2000).then(() => console.log("drained")));
`);
      program = spawn(process.execPath, ["main.ts", `127.0.0.1:${inbound}`, certs.caPath, identity.certPath, identity.keyPath], { cwd: app, stdio: ["ignore", "pipe", "pipe"] });
      let out = "";
      program.stdout!.setEncoding("utf8").on("data", (chunk: string) => (out += chunk));
      program.stderr!.setEncoding("utf8").on("data", (chunk: string) => (out += chunk));
      const exited = new Promise<number | null>((resolve) => program!.on("close", resolve));
      await until("the program's worker to register", 60_000, async () => (out.includes("registered") ? true : undefined));
      const doubled = await finished(((await (await api("/v1/tasks", { capability: "sdk-double", input: { n: 21 } })).json()) as { task: Task }).task.id);
      expect(doubled, out).toMatchObject({ state: "TASK_STATE_SUCCEEDED", workerId: "my-sdk-worker", output: { doubled: 42, pid: program.pid } });
      program.kill("SIGTERM");
      expect(await exited, out).toBe(0);
      expect(out).toContain("drained");
    } finally {
      if (program && program.exitCode === null) program.kill("SIGKILL");
      rmSync(app, { recursive: true, force: true });
    }
  });

  it("--watch starts the worker again when its module changes, says so when the new one does not load, and stops it on Ctrl-C", async () => {
    const module = join(folder, "live.ts");
    const version = (v: number) => writeFileSync(module, `import { defineAgent } from "@taskmesh/worker";\nexport default defineAgent({ capability: "live", handler: () => ({ version: ${v} }) });\n`);
    version(1);
    const cli = spawn(process.execPath, [join(ROOT, "scripts/taskmesh.mjs"), "worker", "--watch", module], { env: upRun.env, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    cli.stdout.setEncoding("utf8").on("data", (chunk: string) => (out += chunk));
    cli.stderr.setEncoding("utf8").on("data", (chunk: string) => (err += chunk));
    const exited = new Promise<number | null>((resolve) => cli.on("close", resolve));
    const live = async () => (await finished(((await (await api("/v1/tasks", { capability: "live", input: {} })).json()) as { task: Task }).task.id)).output;
    try {
      await until("the worker to connect", 120_000, async () => (out.includes("its log follows") ? true : undefined));
      expect(await live()).toEqual({ version: 1 });
      version(2);
      await until("the worker to start again", 120_000, async () => (err.includes("agent-live runs the agents of") ? true : undefined));
      expect(await live()).toEqual({ version: 2 });
      writeFileSync(module, "export default {;\n");
      await until("the broken module to be reported", 120_000, async () => (err.includes("waiting for the next change") ? true : undefined));
      expect((await processes()).filter((name) => name.startsWith("agent-live"))).toEqual([]);
      version(3);
      await until("the fixed module's worker", 120_000, async () => (err.split("agent-live runs the agents of").length === 3 ? true : undefined));
      expect(await live()).toEqual({ version: 3 });
      cli.kill("SIGINT");
      expect(await exited, err).toBe(130);
      expect(await processes()).not.toContain("agent-live");
    } finally {
      if (cli.exitCode === null) cli.kill("SIGKILL");
    }
  }, 300_000);

  it("in the foreground follows the worker's log and stops it on Ctrl-C", async () => {
    const cli = spawn(process.execPath, [join(ROOT, "scripts/taskmesh.mjs"), "worker", join(folder, "my-agents.ts")], { env: upRun.env, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    cli.stdout.setEncoding("utf8").on("data", (chunk: string) => (out += chunk));
    cli.stderr.setEncoding("utf8").on("data", (chunk: string) => (err += chunk));
    const exited = new Promise<number | null>((resolve) => cli.on("close", resolve));
    try {
      await until("the worker to connect", 120_000, async () => (out.includes("its log follows") ? true : undefined));
      await until("its registration in the followed log", 30_000, async () => (out.includes("\"registered\"") ? true : undefined));
      const submitted = await api("/v1/tasks", { capability: "shout", input: { text: "still here" } });
      expect((await finished(((await submitted.json()) as { task: Task }).task.id)).output).toMatchObject({ text: "STILL HERE" });
      cli.kill("SIGINT");
      expect(await exited, err).toBe(130);
      expect(err).toContain("agent-my-agents stopped");
      expect(await processes()).not.toContain("agent-my-agents");
    } finally {
      if (cli.exitCode === null) cli.kill("SIGKILL");
    }
  });
});
