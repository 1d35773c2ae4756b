import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { ProcessSpec } from "@taskmesh/local/process-spec";
import { alive, dependencyLevels, ProcessStartError, Supervisor, type SupervisorEvent } from "@taskmesh/local/supervisor";

const dirs: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "taskmesh-sup-"));
  dirs.push(dir);
  return dir;
}
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A shell process; ready once `marker` exists (the script creates it when it is up). */
function shell(name: string, script: string, marker: string, extra: Partial<ProcessSpec> = {}): ProcessSpec {
  return { name, kind: "infra", command: "/bin/sh", args: ["-c", script], ports: {}, ready: async () => existsSync(marker), readyTimeoutMs: 5000, stopGraceMs: 2000, ...extra };
}

/** Pids of every process whose command line contains `tag`. */
function pidsTagged(tag: string): number[] {
  const out = execFileSync("ps", ["-eo", "pid=,args="], { encoding: "utf8" });
  return out.split("\n").filter((l) => l.includes(tag) && !l.includes("ps -eo")).map((l) => Number(l.trim().split(/\s+/)[0]));
}

describe("dependencyLevels", () => {
  const spec = (name: string, dependsOn: string[] = []): ProcessSpec => ({ name, kind: "infra", command: "x", args: [], ports: {}, ready: async () => true, dependsOn });

  it("orders processes after what they depend on", () => {
    expect(dependencyLevels([spec("config", ["postgres"]), spec("postgres"), spec("redis"), spec("edge", ["config", "redis"])]))
      .toEqual([["postgres", "redis"], ["config"], ["edge"]]);
  });

  it("refuses unknown dependencies and cycles", () => {
    expect(() => dependencyLevels([spec("a", ["b"])])).toThrow(/depends on b, which is not in the plan/);
    expect(() => dependencyLevels([spec("a", ["b"]), spec("b", ["a"])])).toThrow(/dependency cycle/);
  });
});

describe("Supervisor", () => {
  it("starts a process only once what it depends on is ready, and stops them in reverse order", async () => {
    const dir = tempDir();
    const events: SupervisorEvent[] = [];
    const sup = new Supervisor({ logDir: dir, onEvent: (e) => e.type !== "changed" && events.push(e) });
    const a = join(dir, "a.up");
    const b = join(dir, "b.up");
    await sup.start([
      shell("b", `touch ${b}; exec sleep 30`, b, { dependsOn: ["a"] }),
      shell("a", `sleep 0.3; touch ${a}; exec sleep 30`, a),
    ]);
    expect(events.map((e) => `${e.type}:${"name" in e ? e.name : ""}`)).toEqual(["starting:a", "ready:a", "starting:b", "ready:b"]);
    expect(sup.status().map((s) => [s.name, s.state])).toEqual([["a", "running"], ["b", "running"]]);
    const pids = sup.status().map((s) => s.pid!);
    await sup.stop();
    expect(events.slice(4).map((e) => `${e.type}:${"name" in e ? e.name : ""}`)).toEqual(["stopped:b", "stopped:a"]);
    expect(pids.some(alive)).toBe(false);
  });

  it("starts each process once its own dependencies are ready, not after every process started before it", async () => {
    const dir = tempDir();
    const events: string[] = [];
    const sup = new Supervisor({ logDir: dir, onEvent: (e) => e.type !== "changed" && events.push(`${e.type}:${"name" in e ? e.name : ""}`) });
    const [fast, slow, after] = ["fast", "slow", "after"].map((n) => join(dir, `${n}.up`)) as [string, string, string];
    await sup.start([
      shell("slow", `sleep 1; touch ${slow}; exec sleep 30`, slow),
      shell("fast", `touch ${fast}; exec sleep 30`, fast),
      shell("after-fast", `touch ${after}; exec sleep 30`, after, { dependsOn: ["fast"] }),
    ]);
    expect(events.indexOf("ready:after-fast")).toBeLessThan(events.indexOf("ready:slow"));
    expect(events.indexOf("starting:after-fast")).toBeGreaterThan(events.indexOf("ready:fast"));
    await sup.stop();
  });

  it("adds processes to a running set (a dependency already running is met) and removes them for good: stopped, not restarted, no longer listed", async () => {
    const dir = tempDir();
    const sup = new Supervisor({ logDir: dir, restart: true });
    const a = join(dir, "a.up");
    const b = join(dir, "b.up");
    await sup.start([shell("a", `touch ${a}; exec sleep 30`, a)]);
    await sup.start([shell("b", `touch ${b}; exec sleep 30`, b, { dependsOn: ["a"] })]);
    expect(sup.status().map((s) => [s.name, s.state])).toEqual([["a", "running"], ["b", "running"]]);
    const pid = sup.status().find((s) => s.name === "b")!.pid!;
    await sup.remove(["b"]);
    expect(alive(pid)).toBe(false);
    expect(sup.status().map((s) => s.name)).toEqual(["a"]);
    await new Promise((r) => setTimeout(r, 700)); // past the first restart's backoff: nothing comes back
    expect(sup.status().map((s) => s.name)).toEqual(["a"]);
    await expect(sup.remove(["b"])).rejects.toThrow(/no process b/);
    await sup.stop();
  });

  it("restarts a process that crashes, with backoff, and reports it", async () => {
    const dir = tempDir();
    const events: SupervisorEvent[] = [];
    const sup = new Supervisor({ logDir: dir, onEvent: (e) => events.push(e) });
    const marker = join(dir, "up");
    // Up, then crashes once; the second run stays up.
    const crashedOnce = join(dir, "crashed");
    await sup.start([shell("flappy", `touch ${marker}; if [ ! -e ${crashedOnce} ]; then touch ${crashedOnce}; sleep 0.2; exit 3; fi; exec sleep 30`, marker)]);
    const until = Date.now() + 5000;
    while (!events.some((e) => e.type === "restarted") && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    expect(events).toContainEqual({ type: "exited", name: "flappy", code: 3, signal: undefined, restartInMs: 500 });
    expect(events).toContainEqual({ type: "restarted", name: "flappy", restarts: 1 });
    expect(sup.status()[0]).toMatchObject({ state: "running", restarts: 1 });
    await sup.stop();
  });

  it("leaves no orphan: stop kills the whole process group, children included", async () => {
    const dir = tempDir();
    // A sleep length no other process has: it tags the children in `ps`.
    const tag = `${900 + (process.pid % 100)}.${Date.now() % 1_000_000}`;
    const marker = join(dir, "up");
    // The shell ignores SIGTERM and has two children: only the group kill after the grace ends them.
    const sup = new Supervisor({ logDir: dir });
    await sup.start([shell("parent", `trap '' TERM; sleep ${tag} & sleep ${tag} & touch ${marker}; wait`, marker, { stopGraceMs: 500 })]);
    await new Promise((r) => setTimeout(r, 100));
    expect(pidsTagged(tag).length).toBeGreaterThanOrEqual(2);
    await sup.stop();
    await new Promise((r) => setTimeout(r, 100));
    expect(pidsTagged(tag)).toEqual([]);
  });

  it("fails with the log's tail when a process exits before it is ready", async () => {
    const dir = tempDir();
    const sup = new Supervisor({ logDir: dir });
    const failure = sup.start([shell("broken", "echo 'cannot bind port 1234' >&2; exit 1", join(dir, "never"))]);
    await expect(failure).rejects.toBeInstanceOf(ProcessStartError);
    await expect(failure).rejects.toThrow(/cannot bind port 1234/);
    expect(sup.status()[0]!.state).toBe("failed");
    await sup.stop();
  });

  it("fails when a process is not ready in time, and does not leave it running", async () => {
    const dir = tempDir();
    const sup = new Supervisor({ logDir: dir });
    writeFileSync(join(dir, "x"), "");
    const start = sup.start([shell("slow", "exec sleep 30", join(dir, "never"), { readyTimeoutMs: 400 })]);
    await expect(start).rejects.toThrow(/not ready after 400 ms/);
    const { pid } = sup.status()[0]!;
    expect(pid === undefined || !alive(pid)).toBe(true);
  });
});
