import { describe, expect, it } from "vitest";
import type { WorkerInfo } from "@taskmesh/contracts/gen/taskmesh/worker/v1/worker";
import { WorkerSession } from "../../../services/coordinator/src/worker-session.js";

/** A worker with 4 slots in all: `echo` may use all of them, `llm` at most 2. */
const worker = (): WorkerSession => new WorkerSession(
  { workerId: "w1", maxConcurrency: 4, capabilities: [{ name: "echo", maxConcurrency: 0 }, { name: "llm", maxConcurrency: 2 }] } as unknown as WorkerInfo,
  "s1", async () => undefined, () => undefined,
);
const task = (taskId: string, capability: string) => ({ taskId, leaseId: `lease-${taskId}`, attempt: 1, capability, assignedAt: 0 });

describe("a worker session's slots", () => {
  it("counts free slots per capability within the worker's total", () => {
    const s = worker();
    expect([s.free("echo"), s.free("llm"), s.free("other")]).toEqual([4, 2, 0]);
    s.hold(task("a", "llm"));
    s.hold(task("b", "llm"));
    expect([s.free("echo"), s.free("llm"), s.heldCount]).toEqual([2, 0, 2]);
    s.hold(task("c", "echo"));
    s.hold(task("d", "echo"));
    expect([s.free("echo"), s.free("llm")]).toEqual([0, 0]);
    expect(s.release("a")?.capability).toBe("llm");
    expect([s.free("echo"), s.free("llm"), s.heldCount]).toEqual([1, 1, 3]);
  });

  it("counts slots promised to tasks being created (sync match) as used until they are given back", () => {
    const s = worker();
    s.reserve("llm");
    s.reserve("llm");
    expect([s.free("llm"), s.free("echo"), s.reservedCount, s.heldCount]).toEqual([0, 2, 2, 0]);
    // The promise becomes a held task: still one slot, not two.
    s.unreserve("llm");
    s.hold(task("a", "llm"));
    expect([s.free("llm"), s.free("echo"), s.reservedCount, s.heldCount]).toEqual([0, 2, 1, 1]);
    s.unreserve("llm");
    s.unreserve("llm"); // nothing promised any more: no slot appears from nowhere
    expect([s.free("llm"), s.free("echo"), s.reservedCount]).toEqual([1, 3, 0]);
  });

  it("holds a task once however often it is recorded, and releases only what it holds", () => {
    const s = worker();
    s.hold(task("a", "llm"));
    s.hold({ ...task("a", "llm"), attempt: 2 });
    expect([s.heldCount, s.free("llm"), s.heldTask("a")?.attempt]).toEqual([1, 1, 2]);
    expect(s.release("nope")).toBeUndefined();
    expect(s.release("a")?.leaseId).toBe("lease-a");
    expect(s.release("a")).toBeUndefined();
    expect([s.heldCount, s.free("llm")]).toEqual([0, 2]);
  });

  it("offers no slot once draining, and keeps the tasks it holds", () => {
    const s = worker();
    s.hold(task("a", "echo"));
    s.drain();
    expect([s.draining, s.free("echo"), s.heldCount, s.heldTask("a")?.taskId]).toEqual([true, 0, 1, "a"]);
  });
});
