import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("../../..", import.meta.url));
const CLAIMS = join(tmpdir(), "taskmesh-ports");

interface Taker {
  ports: Promise<number[]>;
  /** Lets the process exit (its ports stay its own until then); resolves with its exit code. */
  finish(): Promise<number | null>;
}

/** One process taking `count` ports at once, printing them as a JSON list, then living until told to finish. */
function takePorts(count: number): Taker {
  const script = `import { freePort } from "./packages/local/src/secrets.ts";
const ports = await Promise.all(Array.from({ length: ${count} }, () => freePort()));
console.log(JSON.stringify(ports));
process.stdin.resume().on("end", () => process.exit(0));`;
  const child: ChildProcess = spawn(process.execPath, ["--input-type=module", "-e", script], { cwd: ROOT, stdio: ["pipe", "pipe", "pipe"] });
  const exited = new Promise<number | null>((resolve) => child.on("close", resolve));
  let stderr = "";
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  const ports = new Promise<number[]>((resolve, reject) => {
    let stdout = "";
    child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
      stdout += chunk;
      if (stdout.includes("\n")) resolve(JSON.parse(stdout) as number[]);
    });
    child.on("error", reject);
    void exited.then((code) => reject(new Error(`exited ${code} before printing its ports: ${stderr}`)));
  });
  return {
    ports,
    finish: () => {
      child.stdin!.end();
      return exited;
    },
  };
}

describe("freePort across processes", () => {
  it("never hands the same port to two live processes picking at the same moment, and frees its claims on exit", async () => {
    const takers = [takePorts(400), takePorts(400), takePorts(400)];
    try {
      // 3 × 400 draws from 6,384 ports: by chance alone about a hundred would collide.
      const all = (await Promise.all(takers.map((taker) => taker.ports))).flat();
      expect(all).toHaveLength(1200);
      expect(new Set(all).size).toBe(1200);
      expect(all.every((port) => existsSync(join(CLAIMS, String(port))))).toBe(true);
      expect(await Promise.all(takers.map((taker) => taker.finish()))).toEqual([0, 0, 0]);
      expect(all.filter((port) => existsSync(join(CLAIMS, String(port))))).toEqual([]);
    } finally {
      await Promise.all(takers.map((taker) => taker.finish()));
    }
  }, 60_000);
});
