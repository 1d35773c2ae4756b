import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { createLogger } from "@taskmesh/kit";
import {
  AgentError, defineAgent, echoAgent, failAgent, flakyAgent, hashAgent, sleepAgent, toTaskError, type AgentContext, type AgentDefinition,
} from "../../../services/worker/src/index.js";

const log = createLogger({ service: "worker-test", level: "silent" });

function context(overrides: Partial<AgentContext> = {}): AgentContext & { reports: unknown[] } {
  const reports: unknown[] = [];
  const none = (): never => { throw new Error("the built-in agents spawn no children"); };
  return { signal: new AbortController().signal, attempt: 1, taskId: "t1", log, progress: (...args) => void reports.push(args), spawn: none, all: none, any: none, reports, ...overrides };
}

/** Runs an agent and returns its output, or the TaskError it would report. */
async function run(agent: AgentDefinition, input: Record<string, unknown>, ctx: AgentContext = context()) {
  try {
    return { output: await agent.handler(input, ctx) };
  } catch (error) {
    return { error: toTaskError(error) };
  }
}

describe("built-in agents", () => {
  it("echo returns its input", async () => {
    expect(await run(echoAgent, { a: 1, b: { c: ["x"] } })).toEqual({ output: { a: 1, b: { c: ["x"] } } });
  });

  it("hash returns the sha256 hex of text", async () => {
    const expected = createHash("sha256").update("héllo", "utf8").digest("hex");
    expect(await run(hashAgent, { text: "héllo" })).toEqual({ output: { sha256: expected } });
    expect((await run(hashAgent, { text: "" })).output).toEqual({ sha256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" });
  });

  it("sleep waits ms and reports progress", async () => {
    const ctx = context();
    const began = Date.now();
    expect(await run(sleepAgent, { ms: 50 }, ctx)).toEqual({ output: { sleptMs: 50 } });
    expect(Date.now() - began).toBeGreaterThanOrEqual(45);
    expect(ctx.reports.length).toBeGreaterThan(0);
  });

  it("sleep stops as soon as its signal aborts", async () => {
    const controller = new AbortController();
    const began = Date.now();
    setTimeout(() => controller.abort(new Error("cancelled")), 30);
    const result = await run(sleepAgent, { ms: 10_000 }, context({ signal: controller.signal }));
    expect(Date.now() - began).toBeLessThan(1000);
    expect(result.error).toBeDefined();
    expect(result.output).toBeUndefined();
  });

  it("fail always fails, not retryably, with the message from its input", async () => {
    expect(await run(failAgent, { message: "boom" })).toEqual({ error: { reason: "BIZ_HANDLER_FAILED", message: "boom", retryable: false, details: undefined } });
  });

  it("flaky fails retryably while attempt <= failTimes, then succeeds", async () => {
    for (const attempt of [1, 2]) {
      const { error } = await run(flakyAgent, { failTimes: 2 }, context({ attempt }));
      expect(error).toMatchObject({ retryable: true });
    }
    expect(await run(flakyAgent, { failTimes: 2 }, context({ attempt: 3 }))).toEqual({ output: { attempt: 3, failedTimes: 2 } });
    expect((await run(flakyAgent, { failTimes: 0 })).output).toEqual({ attempt: 1, failedTimes: 0 });
  });

  it.each([
    [sleepAgent, {}], [sleepAgent, { ms: -1 }], [sleepAgent, { ms: "10" }],
    [hashAgent, {}], [hashAgent, { text: 5 }],
    [flakyAgent, {}], [flakyAgent, { failTimes: 1.5 }], [flakyAgent, { failTimes: -2 }],
    [failAgent, { message: 3 }],
  ] as const)("%# bad input is a non-retryable VAL_INVALID_INPUT", async (agent, input) => {
    expect((await run(agent, input)).error).toMatchObject({ reason: "VAL_INVALID_INPUT", retryable: false });
  });
});

describe("the SDK", () => {
  it("plain errors are retryable BIZ_HANDLER_FAILED; AgentError says its reason", () => {
    expect(toTaskError(new Error("x"))).toMatchObject({ reason: "BIZ_HANDLER_FAILED", retryable: true, message: "x" });
    expect(toTaskError(new AgentError("y", { reason: "EXT_UPSTREAM_DOWN", retryable: false }))).toMatchObject({ reason: "EXT_UPSTREAM_DOWN", retryable: false });
    expect(toTaskError(new AgentError("z", { reason: "not snake" }))).toMatchObject({ reason: "BIZ_HANDLER_FAILED" });
  });

  it("defineAgent validates the capability and concurrency and fills defaults", () => {
    const agent = defineAgent({ capability: "my.agent-1", handler: () => ({}) });
    expect(agent).toMatchObject({ capability: "my.agent-1", concurrency: 0, description: "" });
    expect(Object.isFrozen(agent)).toBe(true);
    expect(() => defineAgent({ capability: "Bad", handler: () => ({}) })).toThrow(/capability/);
    expect(() => defineAgent({ capability: "ok", concurrency: -1, handler: () => ({}) })).toThrow(/concurrency/);
  });
});
