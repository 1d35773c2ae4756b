import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { agentModules, agentWorkerName } from "../../../packages/cli/src/commands/up.js";
import { UsageError } from "@taskmesh/local/usage-error";

const dir = mkdtempSync(join(tmpdir(), "taskmesh-agents-cli-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("taskmesh worker and up --agents: names and modules", () => {
  it("names a worker after its module's file, numbered when the name is taken", () => {
    expect(agentWorkerName("/x/my-agents.ts", new Set())).toBe("agent-my-agents");
    expect(agentWorkerName("/x/My Agents.v2.mjs", new Set())).toBe("agent-my-agents-v2");
    expect(agentWorkerName("/x/worker.py", new Set(["agent-worker", "agent-worker-2"]))).toBe("agent-worker-3");
    expect(agentWorkerName("/x/___.ts", new Set())).toBe("agent-module");
  });

  it("takes a file as it is, a folder's agent modules sorted (not its declarations or other files), paths from the caller's folder", () => {
    mkdirSync(join(dir, "agents"));
    for (const f of ["b.ts", "a.mjs", "c.py", "types.d.ts", "notes.md"]) writeFileSync(join(dir, "agents", f), "");
    mkdirSync(join(dir, "agents", "nested.ts"));
    expect(agentModules("agents", dir)).toEqual(["a.mjs", "b.ts", "c.py"].map((f) => join(dir, "agents", f)));
    expect(agentModules("agents/b.ts", dir)).toEqual([join(dir, "agents", "b.ts")]);
    mkdirSync(join(dir, "empty"));
    expect(() => agentModules("empty", dir)).toThrow(UsageError);
    expect(() => agentModules("nowhere", dir)).toThrow(/no file or folder at/);
  });
});
