import { execFile, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ROOT } from "../../deploy/local/provision/versions.js";
import { startUp, until, type UpRun } from "../support/up.js";

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
describe("taskmesh worker: agents of your own under up", { timeout: 240_000 }, () => {
  let upRun: UpRun;
  let token: string;
  let folder: string;
  const api = (path: string, body?: unknown) => fetch(`http://${upRun.edge}${path}`, {
    method: body === undefined ? "GET" : "POST",
    headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
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
    upRun = await startUp();
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

  it("refuses a module that exports no agents, saying why, and leaves nothing of it running", async () => {
    const refused = await upRun.taskmesh("worker", join(folder, "not-agents.ts"));
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain("its default export is not an agent");
    expect((await processes()).filter((name) => name.startsWith("agent-not-agents"))).toEqual([]);
    const missing = await upRun.taskmesh("worker", join(folder, "nowhere.ts"));
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("no agent module at");
  });

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
