import { describe, expect, it } from "vitest";
import { SubmitWorkflowRequest } from "@taskmesh/contracts/gen/taskmesh/coordinator/v1/task_service";
import { FailurePolicy } from "@taskmesh/contracts/gen/taskmesh/task/v1/task";
import { findCycle, graphViolations, refsOf, type GraphTask } from "@taskmesh/contracts/workflow";
import { MeshError } from "@taskmesh/kit";
import { parseSubmitWorkflow, workflowRequestHash } from "../../../services/coordinator/src/validation.js";

const t = (name: string, dependsOn: string[] = [], input?: unknown): GraphTask => ({ name, dependsOn, input });

describe("a workflow's graph (@taskmesh/contracts/workflow)", () => {
  it("finds a cycle and names it in dependency order; a DAG has none", () => {
    expect(findCycle([t("a"), t("b", ["a"]), t("c", ["a", "b"])])).toBeUndefined();
    const tasks = [t("a", ["c"]), t("b", ["a"]), t("c", ["b"]), t("d")];
    expect(findCycle(tasks)!.map((i) => tasks[i]!.name)).toEqual(["a", "c", "b", "a"]);
    expect(graphViolations([t("x", ["y"]), t("y", ["x"])])).toEqual([
      { field: "tasks[0].depends_on", description: "the dependencies make a cycle: x → y → x", reason: "VAL_WORKFLOW_CYCLE" },
    ]);
  });

  it("a chain of 10,000 has no cycle and is checked without deep recursion", () => {
    const chain = Array.from({ length: 10_000 }, (_, i) => t(`s${i}`, i === 0 ? [] : [`s${i - 1}`]));
    expect(graphViolations(chain)).toEqual([]);
    expect(graphViolations([...chain, t("s10000")])).toEqual([{ field: "tasks", description: "must hold 1..10000 tasks", reason: "VAL_INVALID_ARGUMENT" }]);
  });

  it("refuses bad and repeated names, unknown, repeated and own dependencies, and references to a task not depended on", () => {
    const found = graphViolations([
      t("Bad Name"), t("a"), t("a"), t("b", ["a", "a", "nope", "b"]), t("c", ["a"], { x: [{ $ref: "a.out" }, { $ref: "b" }], y: { $ref: "a", extra: 1 } }),
    ]);
    expect(found.map((v) => `${v.field}: ${v.description}`)).toEqual([
      "tasks[0].name: must be 1..63 characters of a-z 0-9 . _ -, starting with a letter or digit",
      "tasks[2].name: repeats the name of tasks[1]: a",
      "tasks[3].depends_on[1]: repeats a",
      'tasks[3].depends_on[2]: no task of the workflow is named "nope"',
      "tasks[3].depends_on[3]: a task cannot depend on itself",
      'tasks[4].task.input: references "b": a reference must name a task it depends on (one of a)',
    ]);
    // An object with more keys than $ref is plain data, not a reference.
    expect(refsOf({ y: { $ref: "a", extra: 1 }, z: [{ $ref: "b.c" }] })).toEqual(["b.c"]);
  });
});

describe("SubmitWorkflow's validation in the coordinator", () => {
  const request = (overrides: object) => SubmitWorkflowRequest.fromJSON({ tasks: [{ name: "a", task: { capability: "echo" } }], ...overrides });

  it("checks each task as a submit (its violations under tasks[i].task), the graph and the workflow's own fields, all at once", () => {
    let error: unknown;
    try {
      parseSubmitWorkflow({
        ...request({
          idempotencyKey: "has space",
          tasks: [{ name: "a", task: { capability: "nope", priority: 12 } }, { name: "b", dependsOn: ["zz"], task: { capability: "echo", idempotencyKey: "k" } }],
        }),
        failurePolicy: 9 as FailurePolicy,
      }, (c) => c === "echo");
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(MeshError);
    expect((error as MeshError).reason).toBe("VAL_UNKNOWN_CAPABILITY");
    expect((error as MeshError).violations.map((v) => v.field)).toEqual([
      "tasks[1].depends_on[0]", "failure_policy", "idempotency_key", "tasks[0].task.capability", "tasks[0].task.priority", "tasks[1].task.idempotency_key",
    ]);
  });

  it("a cycle answers VAL_WORKFLOW_CYCLE; a sound workflow gets its defaults and a fingerprint that ignores the key", () => {
    expect(() => parseSubmitWorkflow(request({ tasks: [{ name: "a", dependsOn: ["a2"], task: { capability: "echo" } }, { name: "a2", dependsOn: ["a"], task: { capability: "echo" } }] }), () => true))
      .toThrow(expect.objectContaining({ reason: "VAL_WORKFLOW_CYCLE" }));
    const valid = parseSubmitWorkflow(request({ idempotencyKey: "k1" }), () => true);
    expect(valid.failurePolicy).toBe(FailurePolicy.FAILURE_POLICY_FAIL_FAST);
    expect(valid.tasks[0]!.submit).toMatchObject({ capability: "echo", maxAttempts: 3, timeoutMs: 300_000 });
    expect(workflowRequestHash(request({ idempotencyKey: "k1" }))).toBe(workflowRequestHash(request({ idempotencyKey: "k2" })));
    expect(workflowRequestHash(request({ name: "other" }))).not.toBe(workflowRequestHash(request({})));
  });
});
