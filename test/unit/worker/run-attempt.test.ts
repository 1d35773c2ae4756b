import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import type { TaskResult } from "@taskmesh/contracts/gen/taskmesh/worker/v1/worker";
import { createLogger } from "@taskmesh/kit";
import type { HeldTask } from "../../../packages/worker/src/held-task.js";
import { runAttempt } from "@taskmesh/worker/service";
import type { AgentHandler } from "@taskmesh/worker/service";

/** One attempt of an agent whose handler is `handler`, its log lines collected. */
async function attempt(handler: AgentHandler): Promise<{ lines: Array<Record<string, unknown>>; result: TaskResult | undefined }> {
  const lines: Array<Record<string, unknown>> = [];
  const destination = new Writable({ write(chunk: Buffer, _enc, done) { lines.push(JSON.parse(chunk.toString())); done(); } });
  const log = createLogger({ service: "worker-test", destination, level: "info" });
  let result: TaskResult | undefined;
  const task = {
    key: "t-1/1", controller: new AbortController(), started: false, running: true, stopped: undefined, result: undefined, resultSentAt: 0,
    assignment: { taskId: "t-1", attempt: 1, capability: "talker", leaseId: "l-1", input: {} },
    agent: { capability: "talker", handler, concurrency: 0, description: "" },
  } as unknown as HeldTask;
  await runAttempt(task, { log, send: () => undefined, finished: (r) => (result = r) });
  return { lines, result };
}

describe("runAttempt: the context an agent's handler gets", () => {
  it("ctx.log writes lines bound to the task (id, attempt, capability)", async () => {
    const { lines, result } = await attempt(async (_input, ctx) => {
      ctx.log.info({ step: 1 }, "working");
      return { ok: true };
    });
    expect(result?.outcome?.$case).toBe("succeeded");
    expect(lines.find((l) => l.msg === "working")).toMatchObject({ taskId: "t-1", attempt: 1, capability: "talker", step: 1 });
  });
});
