import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ROOT } from "../support/processes.js";
import { upForSuite } from "../support/up.js";

// The README's commands as a user types them after `npm start`: every block
// marked `<!-- runs in test/e2e/readme.test.ts -->`, in order, in one bash
// (variables carry from one block to the next), against a running system.
// Only what this run moves is put in place of the defaults: its ports and
// its state folder.
const MARKER = "<!-- runs in test/e2e/readme.test.ts -->";

/** The marked blocks of the README, in order. */
function markedBlocks(readme: string): string[] {
  const blocks: string[] = [];
  const pattern = new RegExp(`${MARKER.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}\\n\`\`\`sh\\n([\\s\\S]*?)\\n\`\`\`\\n`, "g");
  for (const match of readme.matchAll(pattern)) blocks.push(match[1]!);
  return blocks;
}

describe("the README's commands, verbatim, against a running system", { timeout: 240_000 }, () => {
  const upRun = upForSuite();

  it("every marked block runs and exits 0, and answers what the README says it does", async () => {
    const readme = readFileSync(join(ROOT, "README.md"), "utf8");
    const blocks = markedBlocks(readme);
    expect(blocks.length, "marked blocks in README.md").toBe(readme.split(MARKER).length - 1);
    expect(blocks.length).toBeGreaterThanOrEqual(4);
    const env = upRun().env;
    const script = blocks.join("\n")
      .replaceAll("127.0.0.1:8080", `127.0.0.1:${env.TASKMESH_EDGE_PORT}`)
      .replaceAll("127.0.0.1:16686", `127.0.0.1:${env.TASKMESH_JAEGER_PORT}`)
      .replaceAll("-p 16379", `-p ${env.TASKMESH_REDIS_PORT}`)
      .replaceAll(".taskmesh/", `${upRun().stateDir}/`);
    const { code, output } = await new Promise<{ code: number | null; output: string }>((resolve) => {
      // -x: each command is echoed (to the same output) before it runs, so a failure shows which one.
      const child = spawn("bash", ["-euxo", "pipefail", "-c", script], { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
      let output = "";
      child.stdout.on("data", (d: Buffer) => (output += d.toString()));
      child.stderr.on("data", (d: Buffer) => (output += d.toString()));
      child.on("close", (exitCode) => resolve({ code: exitCode, output }));
    });
    expect(code, output.slice(-4000)).toBe(0);
    // What the README says each command shows.
    expect(output).toMatch(/state\s+SUCCEEDED/); // task get
    expect(output).toContain("PONG"); // redis-cli ping
    expect(output).toMatch(/"keys"\s*:/); // the edge's JWKS
    expect(output).toMatch(/"accessToken"\s*:/); // an API key exchanged for tokens
    expect(output).toContain("taskmesh.config.v1.ConfigService"); // grpcurl list on config
    expect(output).toContain("TASK_STATE_SUCCEEDED"); // WatchTask until the task ended
    expect(output).toContain("hello, you"); // an agent of one's own, run with taskmesh worker
  });
});
