import { execFile, spawn } from "node:child_process";
import { appendFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ROOT } from "@taskmesh/local/provision/versions";

const run = promisify(execFile);

describe("npx taskmesh logs without a process: every process's log", () => {
  let stateDir: string;
  const env = () => ({ ...process.env, NO_COLOR: "1", TASKMESH_STATE_DIR: stateDir });
  beforeAll(() => {
    stateDir = mkdtempSync(join(tmpdir(), "taskmesh-logs-cli-"));
    mkdirSync(join(stateDir, "logs"));
    writeFileSync(join(stateDir, "logs", "worker-0.log"), Array.from({ length: 30 }, (_, i) => `worker line ${i + 1}`).join("\n") + "\n");
    writeFileSync(join(stateDir, "logs", "kafka.log"), "kafka started\n");
  });
  afterAll(() => rmSync(stateDir, { recursive: true, force: true }));

  it("prints the last lines of each, prefixed with its process", async () => {
    const { stdout } = await run(process.execPath, [join(ROOT, "scripts/taskmesh.mjs"), "logs"], { env: env(), timeout: 20_000 });
    const lines = stdout.trimEnd().split("\n");
    expect(lines[0]).toBe("kafka    | kafka started");
    expect(lines.slice(1)).toEqual(Array.from({ length: 10 }, (_, i) => `worker-0 | worker line ${i + 21}`));
  });

  it("with -f, goes on printing new lines of any log, a log that appears later included", async () => {
    const child = spawn(process.execPath, [join(ROOT, "scripts/taskmesh.mjs"), "logs", "-f"], { env: env() });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    const seen = async (text: string): Promise<void> => {
      const deadline = Date.now() + 15_000;
      while (!out.includes(text)) {
        if (Date.now() > deadline) throw new Error(`no ${JSON.stringify(text)} in:\n${out}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    try {
      await seen("worker line 30");
      appendFileSync(join(stateDir, "logs", "kafka.log"), "kafka rebalanced\n");
      writeFileSync(join(stateDir, "logs", "coordinator-0.log"), "coordinator ready\n");
      await seen("kafka    | kafka rebalanced");
      await seen("coordinator ready");
      expect(out).toMatch(/^coordinator-0 \| coordinator ready$/m);
    } finally {
      child.kill("SIGINT");
    }
  });
});
