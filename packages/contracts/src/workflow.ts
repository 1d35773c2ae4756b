/**
 * @taskmesh/contracts/workflow: the rules of a workflow's graph
 * (task_service.proto, SubmitWorkflow), checked the same way by the
 * coordinator and the ledger.
 */

/** A workflow task's name: 1..63 characters of `a-z 0-9 . _ -`, starting with a letter or digit (WorkflowTaskSpec.name). */
export const WORKFLOW_STEP_NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;

/** The most tasks one workflow holds. */
export const MAX_WORKFLOW_TASKS = 10_000;

/** One task of a workflow, as its graph sees it. */
export interface GraphTask {
  readonly name: string;
  readonly dependsOn: readonly string[];
  /** Its input, whose `{"$ref": "<name>[.<field>…]"}` values must name tasks it depends on. */
  readonly input?: unknown;
}

/** What is wrong with a graph, at one field (`tasks[i].name`, `tasks[i].depends_on[j]`, `tasks[i].task.input`). */
export interface GraphViolation {
  readonly field: string;
  readonly description: string;
  /** VAL_WORKFLOW_CYCLE for a cycle; else VAL_INVALID_ARGUMENT. */
  readonly reason: "VAL_WORKFLOW_CYCLE" | "VAL_INVALID_ARGUMENT";
}

/** Whether `value` is a reference: an object whose one key is `$ref`, a string. */
function isRef(value: unknown): value is { $ref: string } {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  const keys = Object.keys(value);
  return keys.length === 1 && keys[0] === "$ref" && typeof (value as { $ref: unknown }).$ref === "string";
}

/** Every reference in `value` (the `$ref` strings, in document order). */
export function refsOf(value: unknown, into: string[] = []): string[] {
  if (isRef(value)) into.push(value.$ref);
  else if (Array.isArray(value)) for (const item of value) refsOf(item, into);
  else if (typeof value === "object" && value !== null) for (const item of Object.values(value)) refsOf(item, into);
  return into;
}

/** The task a reference names: its text up to the first dot. */
export function refTarget(ref: string): string {
  const dot = ref.indexOf(".");
  return dot < 0 ? ref : ref.slice(0, dot);
}

/**
 * A cycle among `tasks` (by index, in dependency order, the first task
 * again at the end), or undefined when the graph has none. Dependencies on
 * unknown names and on the task itself are skipped (reported apart).
 */
export function findCycle(tasks: readonly GraphTask[]): number[] | undefined {
  const index = new Map(tasks.map((t, i) => [t.name, i]));
  const state = new Uint8Array(tasks.length); // 0 unseen, 1 on the path, 2 done
  for (let root = 0; root < tasks.length; root++) {
    if (state[root] !== 0) continue;
    // Depth first without recursion: a path of [task, next dependency to look at].
    const path: Array<[number, number]> = [[root, 0]];
    state[root] = 1;
    while (path.length > 0) {
      const top = path[path.length - 1]!;
      const deps = tasks[top[0]]!.dependsOn;
      if (top[1] >= deps.length) {
        state[top[0]] = 2;
        path.pop();
        continue;
      }
      const next = index.get(deps[top[1]++]!);
      if (next === undefined || next === top[0] || state[next] === 2) continue;
      if (state[next] === 1) {
        const from = path.findIndex(([i]) => i === next);
        return [...path.slice(from).map(([i]) => i), next];
      }
      state[next] = 1;
      path.push([next, 0]);
    }
  }
  return undefined;
}

/**
 * What is wrong with a workflow's graph: a bad or repeated name, a
 * dependency that is not in the workflow, repeated, or the task itself, a
 * reference to a task it does not depend on, too many or no tasks, and a
 * cycle (reported once, with its path). Empty when the graph is sound.
 */
export function graphViolations(tasks: readonly GraphTask[]): GraphViolation[] {
  const out: GraphViolation[] = [];
  const bad = (field: string, description: string): void => void out.push({ field, description, reason: "VAL_INVALID_ARGUMENT" });
  if (tasks.length === 0 || tasks.length > MAX_WORKFLOW_TASKS) {
    bad("tasks", `must hold 1..${MAX_WORKFLOW_TASKS} tasks`);
    return out;
  }
  const seen = new Map<string, number>();
  tasks.forEach((t, i) => {
    if (!WORKFLOW_STEP_NAME.test(t.name)) bad(`tasks[${i}].name`, "must be 1..63 characters of a-z 0-9 . _ -, starting with a letter or digit");
    else if (seen.has(t.name)) bad(`tasks[${i}].name`, `repeats the name of tasks[${seen.get(t.name)}]: ${t.name}`);
    else seen.set(t.name, i);
  });
  tasks.forEach((t, i) => {
    const own = new Set<string>();
    t.dependsOn.forEach((d, j) => {
      const field = `tasks[${i}].depends_on[${j}]`;
      if (d === t.name) bad(field, "a task cannot depend on itself");
      else if (!seen.has(d)) bad(field, `no task of the workflow is named ${JSON.stringify(d)}`);
      else if (own.has(d)) bad(field, `repeats ${d}`);
      own.add(d);
    });
    for (const ref of refsOf(t.input)) {
      const target = refTarget(ref);
      if (!own.has(target) || target === t.name) {
        bad(`tasks[${i}].task.input`, `references ${JSON.stringify(ref)}: a reference must name a task it depends on (${t.dependsOn.length === 0 ? "it depends on none" : `one of ${t.dependsOn.join(", ")}`})`);
      }
    }
  });
  const cycle = findCycle(tasks);
  if (cycle) {
    out.push({
      field: `tasks[${cycle[0]}].depends_on`, reason: "VAL_WORKFLOW_CYCLE",
      description: `the dependencies make a cycle: ${cycle.map((i) => tasks[i]!.name).join(" → ")}`,
    });
  }
  return out;
}
