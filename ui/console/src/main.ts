// The taskmesh console: tasks (filtered, updating live), a task's page
// (timeline, input, output, error, trace link, cancel), workers, queues and
// a submit form, over the edge's HTTP/JSON API with the user's token.
// Pages are routed by the URL's hash: #/tasks, #/tasks/<id>, #/submit,
// #/workers, #/queues, #/workflows/<id> (a workflow's graph).

import { TaskState, TransitionKind, WorkflowState, type Task, type Workflow } from "@taskmesh/contracts/gen/taskmesh/task/v1/task";
import { WorkerState } from "@taskmesh/contracts/gen/taskmesh/worker/v1/worker";
import {
  ApiError, STATES, cancelTask, cancelWorkflow, consoleConfig, getHistory, getTask, getWorkflow, listQueues, listTasks, listWorkers, signIn, signOut, signedIn, submitTask,
} from "./api.js";

type Child = Node | string | number | null | undefined | false;

/** An element with attributes (`on*` ones are listeners) and children. */
function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, unknown> = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") el.addEventListener(name.slice(2), value as EventListener);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) if (child !== null && child !== undefined && child !== false) el.append(typeof child === "number" ? String(child) : child);
  return el;
}

const main = document.getElementById("main")!;
const FINAL = new Set([TaskState.TASK_STATE_SUCCEEDED, TaskState.TASK_STATE_FAILED, TaskState.TASK_STATE_CANCELLED, TaskState.TASK_STATE_TIMED_OUT]);
const config = consoleConfig();

const stateName = (s: TaskState): string => TaskState[s]?.replace(/^TASK_STATE_/, "") ?? String(s);
const badge = (s: TaskState) => h("span", { class: `state ${stateName(s)}`, "data-state": stateName(s) }, stateName(s));
const time = (d: Date | undefined): string => (d ? d.toLocaleString() : "—");
const json = (v: unknown): string => JSON.stringify(v ?? null, null, 2);
const age = (ms: number): string => (ms < 1000 ? `${Math.round(ms)} ms` : ms < 120_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms / 60_000)} min`);
const failure = (error: unknown) => h("p", { class: "error", role: "alert" }, error instanceof ApiError ? `${error.message}${error.reason ? ` (${error.reason})` : ""}` : String(error));

/** Runs `draw` now and every `ms` until the page changes; a failed round shows its error and tries again. */
function live(signal: AbortSignal, ms: number, draw: () => Promise<boolean | void>): void {
  const round = async (): Promise<void> => {
    if (signal.aborted) return;
    let again = true;
    try {
      again = (await draw()) !== false;
    } catch (error) {
      if (signal.aborted) return;
      if (error instanceof ApiError && error.status === 401) return void route();
      main.querySelector(".live-error")?.replaceChildren(failure(error));
    }
    if (again && !signal.aborted) setTimeout(() => void round(), ms);
  };
  void round();
}

function signInPage(): void {
  const secret = h("input", { name: "secret", type: "password", placeholder: "tm_… or eyJ…", size: 60, autocomplete: "off", required: true });
  const status = h("div");
  main.replaceChildren(h("h1", {}, "Sign in"),
    h("form", { class: "submit", onsubmit: async (event: Event) => {
      event.preventDefault();
      try {
        await signIn(secret.value);
        location.hash = "#/tasks";
        route();
      } catch (error) {
        status.replaceChildren(failure(error));
      }
    } },
    h("label", {}, "API key or access token", secret),
    h("p", { class: "muted" }, "On a development machine, ", h("code", {}, "npx taskmesh token"), " prints an access token."),
    h("div", {}, h("button", { type: "submit" }, "Sign in")), status));
}

function tasksPage(signal: AbortSignal, query: URLSearchParams): void {
  const state = h("select", { name: "state" }, h("option", { value: "" }, "any state"), ...STATES.map((s) => h("option", { value: s, selected: query.get("state") === s }, s)));
  const capability = h("input", { name: "capability", placeholder: "any capability", value: query.get("capability") ?? "", list: "capabilities" });
  const capabilities = h("datalist", { id: "capabilities" });
  const body = h("tbody");
  const apply = (event?: Event) => {
    event?.preventDefault();
    const next = new URLSearchParams();
    if (state.value) next.set("state", state.value);
    if (capability.value.trim()) next.set("capability", capability.value.trim());
    location.hash = `#/tasks${next.size ? `?${next}` : ""}`;
  };
  state.addEventListener("change", () => apply());
  main.replaceChildren(h("h1", {}, "Tasks"),
    h("form", { class: "filters", onsubmit: apply }, h("label", {}, "State", state), h("label", {}, "Capability", capability, capabilities), h("button", { type: "submit", class: "secondary" }, "Filter")),
    h("div", { class: "live-error" }),
    h("table", { id: "tasks" }, h("thead", {}, h("tr", {}, ...["Task", "Capability", "State", "Attempts", "Worker", "Created"].map((c) => h("th", {}, c)))), body));
  void listQueues().then((qs) => capabilities.replaceChildren(...qs.map((q) => h("option", { value: q.capability }))), () => undefined);
  live(signal, 2000, async () => {
    const tasks = await listTasks({ state: query.get("state") ?? "", capability: query.get("capability") ?? "", pageSize: 50 });
    if (signal.aborted) return;
    body.replaceChildren(...(tasks.length === 0
      ? [h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No tasks match."))]
      : tasks.map((t) => h("tr", { "data-task": t.id },
        h("td", {}, h("a", { href: `#/tasks/${t.id}` }, h("code", {}, t.id))), h("td", {}, t.capability), h("td", {}, badge(t.state)),
        h("td", { class: "num" }, `${t.attempts}/${t.maxAttempts}`), h("td", {}, t.workerId || "—"), h("td", {}, time(t.createdAt))))));
    main.querySelector(".live-error")?.replaceChildren();
  });
}

function describe(t: Task, jaegerUrl: string): HTMLElement {
  const trace = jaegerUrl && t.traceId ? h("a", { href: `${jaegerUrl}/trace/${t.traceId}`, target: "_blank", rel: "noopener", id: "trace-link" }, t.traceId) : t.traceId || "—";
  return h("dl", { class: "facts" },
    h("dt", {}, "State"), h("dd", {}, badge(t.state)),
    h("dt", {}, "Capability"), h("dd", {}, t.capability),
    h("dt", {}, "Attempts"), h("dd", {}, `${t.attempts} of ${t.maxAttempts}`),
    h("dt", {}, "Worker"), h("dd", {}, t.workerId || "—"),
    h("dt", {}, "Priority"), h("dd", {}, t.priority),
    h("dt", {}, "Created"), h("dd", {}, `${time(t.createdAt)}${t.createdBy ? ` by ${t.createdBy}` : ""}`),
    h("dt", {}, "Started"), h("dd", {}, time(t.startedAt)),
    h("dt", {}, "Finished"), h("dd", {}, time(t.finishedAt)),
    h("dt", {}, "Trace"), h("dd", {}, trace),
    ...(t.workflowId ? [h("dt", {}, "Workflow"), h("dd", {}, h("a", { href: `#/workflows/${t.workflowId}`, id: "workflow-link" }, t.workflowId), ` · step ${t.workflowStep}`)] : []),
    ...(t.parentId ? [h("dt", {}, "Parent"), h("dd", {}, h("a", { href: `#/tasks/${t.parentId}`, id: "parent-link" }, t.parentId), ` · step ${t.workflowStep}`)] : []),
    ...(t.progress ? [h("dt", {}, "Progress"), h("dd", {}, `${t.progress.percent !== undefined ? `${t.progress.percent}% ` : ""}${t.progress.message}`)] : []));
}

function taskPage(signal: AbortSignal, id: string): void {
  const facts = h("div");
  const actions = h("div", { class: "actions" });
  const timeline = h("ol", { class: "timeline", id: "timeline" });
  const input = h("pre", { id: "input" });
  const output = h("pre", { id: "output" });
  const error = h("pre", { id: "task-error" });
  main.replaceChildren(h("h1", {}, "Task ", h("code", {}, id)), h("div", { class: "live-error" }), actions, facts,
    h("h2", {}, "Timeline"), timeline,
    h("div", { class: "columns" }, h("div", {}, h("h2", {}, "Input"), input), h("div", {}, h("h2", {}, "Output"), output)),
    h("h2", {}, "Error"), error);
  live(signal, 1000, async () => {
    const [task, history, { jaegerUrl }] = await Promise.all([getTask(id), getHistory(id), config]);
    if (signal.aborted) return false;
    facts.replaceChildren(describe(task, jaegerUrl));
    timeline.replaceChildren(...history.map((tr) => h("li", { "data-kind": TransitionKind[tr.kind]?.replace(/^TRANSITION_KIND_/, "") },
      h("strong", {}, TransitionKind[tr.kind]?.replace(/^TRANSITION_KIND_/, "") ?? tr.kind), " ", h("span", { class: "muted" }, time(tr.at)),
      tr.attempt ? ` · attempt ${tr.attempt}` : "", tr.workerId ? ` · ${tr.workerId}` : "", tr.reason ? ` · ${tr.reason}` : "",
      tr.error ? h("div", { class: "error" }, `${tr.error.reason}: ${tr.error.message}`) : null)));
    input.textContent = json(task.input);
    output.textContent = task.output === undefined ? "—" : json(task.output);
    error.textContent = task.error ? json(task.error) : "—";
    const cancellable = !FINAL.has(task.state);
    actions.replaceChildren(...(cancellable
      ? [h("button", { class: "danger", id: "cancel", onclick: async () => {
        try {
          await cancelTask(id, "cancelled from the console");
        } catch (e) {
          main.querySelector(".live-error")?.replaceChildren(failure(e));
        }
      } }, "Cancel")]
      : []));
    main.querySelector(".live-error")?.replaceChildren();
    return cancellable;
  });
}

const SVG = "http://www.w3.org/2000/svg";

/** An SVG element with attributes and children. */
function s<K extends keyof SVGElementTagNameMap>(tag: K, attrs: Record<string, string | number>, ...children: Array<Node | string>): SVGElementTagNameMap[K] {
  const el = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) el.setAttribute(name, String(value));
  el.append(...children);
  return el;
}

/**
 * A workflow's graph: each task a box in the column of its depth (the
 * longest chain of dependencies before it), coloured by its state and
 * linking to its page; each dependency an arrow from the task it waits for.
 */
function workflowGraph(w: Workflow): SVGSVGElement {
  const byName = new Map(w.nodes.map((n) => [n.name, n]));
  const depth = new Map<string, number>();
  // Depth by relaxation over the nodes in submit order: a DAG settles within as many rounds as its longest chain.
  for (let changed = true, round = 0; changed && round <= w.nodes.length; round++) {
    changed = false;
    for (const n of w.nodes) {
      const d = n.dependsOn.reduce((m, dep) => Math.max(m, (depth.get(dep) ?? 0) + 1), 0);
      if (depth.get(n.name) !== d) {
        depth.set(n.name, d);
        changed = true;
      }
    }
  }
  const columns: string[][] = [];
  for (const n of w.nodes) (columns[depth.get(n.name) ?? 0] ??= []).push(n.name);
  const [boxW, boxH, gapX, gapY, pad] = [150, 34, 70, 12, 10];
  const at = new Map<string, { x: number; y: number }>();
  columns.forEach((names, c) => names.forEach((name, r) => at.set(name, { x: pad + c * (boxW + gapX), y: pad + r * (boxH + gapY) })));
  const width = pad * 2 + columns.length * (boxW + gapX) - gapX;
  const height = pad * 2 + Math.max(...columns.map((c) => c.length)) * (boxH + gapY) - gapY;
  const edges = w.nodes.flatMap((n) => n.dependsOn.filter((d) => byName.has(d)).map((d) => {
    const from = at.get(d)!;
    const to = at.get(n.name)!;
    return s("line", { x1: from.x + boxW, y1: from.y + boxH / 2, x2: to.x, y2: to.y + boxH / 2, class: "edge", "data-from": d, "data-to": n.name, "marker-end": "url(#arrow)" });
  }));
  const boxes = w.nodes.map((n) => {
    const { x, y } = at.get(n.name)!;
    const state = stateName(n.state);
    const link = s("a", { href: `#/tasks/${n.taskId}` },
      s("rect", { x, y, width: boxW, height: boxH, rx: 6, class: `node ${state}` }),
      s("text", { x: x + 8, y: y + 14, class: "name" }, n.name.length > 20 ? `${n.name.slice(0, 19)}…` : n.name),
      s("text", { x: x + 8, y: y + 27, class: "sub" }, `${n.capability} · ${state}`));
    return s("g", { class: "task", "data-name": n.name, "data-state": state }, link);
  });
  const arrow = s("defs", {}, s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 6, markerHeight: 6, orient: "auto" }, s("path", { d: "M0,0 L10,5 L0,10 z" })));
  return s("svg", { width, height, viewBox: `0 0 ${width} ${height}`, class: "graph", id: "graph" }, arrow, ...edges, ...boxes);
}

function workflowPage(signal: AbortSignal, id: string): void {
  const summary = h("div");
  const actions = h("div", { class: "actions" });
  const graph = h("div", { class: "graph-box" });
  main.replaceChildren(h("h1", {}, "Workflow ", h("code", {}, id)), h("div", { class: "live-error" }), actions, summary, h("h2", {}, "Graph"), graph);
  live(signal, 1000, async () => {
    const w = await getWorkflow(id);
    if (signal.aborted) return false;
    const stateOfWorkflow = WorkflowState[w.state]?.replace(/^WORKFLOW_STATE_/, "") ?? String(w.state);
    const c = w.counts;
    summary.replaceChildren(h("dl", { class: "facts" },
      h("dt", {}, "State"), h("dd", {}, h("span", { class: `state ${stateOfWorkflow}`, id: "workflow-state", "data-state": stateOfWorkflow }, stateOfWorkflow)),
      h("dt", {}, "Name"), h("dd", {}, w.name || "—"),
      h("dt", {}, "Tasks"), h("dd", {}, c ? `${c.total} in all: ${c.succeeded} succeeded, ${c.running} running, ${c.pending} pending, ${c.waiting} waiting, ${c.failed + c.timedOut} failed, ${c.cancelled} cancelled` : "—"),
      h("dt", {}, "Created"), h("dd", {}, `${time(w.createdAt)}${w.createdBy ? ` by ${w.createdBy}` : ""}`),
      h("dt", {}, "Finished"), h("dd", {}, time(w.finishedAt))));
    graph.replaceChildren(workflowGraph(w));
    const running = w.state === WorkflowState.WORKFLOW_STATE_RUNNING;
    actions.replaceChildren(...(running
      ? [h("button", { class: "danger", id: "cancel-workflow", onclick: async () => {
        try {
          await cancelWorkflow(id, "cancelled from the console");
        } catch (e) {
          main.querySelector(".live-error")?.replaceChildren(failure(e));
        }
      } }, "Cancel workflow")]
      : []));
    main.querySelector(".live-error")?.replaceChildren();
    return running;
  });
}

function submitPage(): void {
  const capability = h("select", { name: "capability", required: true });
  const input = h("textarea", { name: "input", spellcheck: "false" }, "{}");
  const priority = h("input", { name: "priority", type: "number", value: 0, min: -1000, max: 1000 });
  const maxAttempts = h("input", { name: "maxAttempts", type: "number", value: 3, min: 1, max: 100 });
  const status = h("div");
  main.replaceChildren(h("h1", {}, "Submit a task"), h("form", { class: "submit", onsubmit: async (event: Event) => {
    event.preventDefault();
    let parsed: unknown;
    try {
      parsed = JSON.parse(input.value);
    } catch (e) {
      return void status.replaceChildren(failure(`the input is not JSON: ${(e as Error).message}`));
    }
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) return void status.replaceChildren(failure("the input must be a JSON object"));
    try {
      const task = await submitTask({ capability: capability.value, input: parsed as Record<string, unknown>, priority: Number(priority.value), maxAttempts: Number(maxAttempts.value) });
      location.hash = `#/tasks/${task.id}`;
    } catch (e) {
      status.replaceChildren(failure(e));
    }
  } },
  h("label", {}, "Capability", capability), h("label", {}, "Input (JSON object)", input),
  h("div", { class: "actions" }, h("label", {}, "Priority", priority), h("label", {}, "Max attempts", maxAttempts)),
  h("div", {}, h("button", { type: "submit" }, "Submit")), status));
  void listWorkers().then((workers) => {
    const names = [...new Set(workers.filter((w) => w.state === WorkerState.WORKER_STATE_CONNECTED).flatMap((w) => w.info?.capabilities.map((c) => c.name) ?? []))].sort();
    capability.replaceChildren(...names.map((n) => h("option", { value: n }, n)));
  }, (e: unknown) => status.replaceChildren(failure(e)));
}

function workersPage(signal: AbortSignal): void {
  const body = h("tbody");
  main.replaceChildren(h("h1", {}, "Workers"), h("div", { class: "live-error" }),
    h("table", { id: "workers" }, h("thead", {}, h("tr", {}, ...["Worker", "State", "Capabilities", "Slots in use", "Load", "Last heartbeat"].map((c) => h("th", {}, c)))), body));
  live(signal, 2000, async () => {
    const workers = await listWorkers();
    if (signal.aborted) return;
    body.replaceChildren(...(workers.length === 0
      ? [h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No worker has connected in the last hour."))]
      : workers.map((w) => {
        const slots = w.info?.maxConcurrency ?? 0;
        const used = slots > 0 ? Math.min(1, w.inFlight / slots) : 0;
        return h("tr", { "data-worker": w.info?.workerId },
          h("td", {}, h("code", {}, w.info?.workerId ?? "")), h("td", {}, WorkerState[w.state]?.replace(/^WORKER_STATE_/, "") ?? ""),
          h("td", {}, (w.info?.capabilities ?? []).map((c) => `${c.name}${c.maxConcurrency ? ` (${c.maxConcurrency})` : ""}`).join(", ")),
          h("td", {}, h("span", { class: "bar", title: `${Math.round(used * 100)}%` }, h("span", { style: `width:${used * 100}%` })), `${w.inFlight} / ${slots}`),
          h("td", { class: "num" }, w.load.toFixed(2)), h("td", {}, time(w.lastHeartbeatAt)));
      })));
    main.querySelector(".live-error")?.replaceChildren();
  });
}

function queuesPage(signal: AbortSignal): void {
  const body = h("tbody");
  main.replaceChildren(h("h1", {}, "Queues"), h("div", { class: "live-error" }),
    h("table", { id: "queues" }, h("thead", {}, h("tr", {}, h("th", {}, "Capability"), h("th", { class: "num" }, "Pending"), h("th", { class: "num" }, "Running"), h("th", { class: "num" }, "Oldest due task waiting"))), body));
  live(signal, 2000, async () => {
    const queues = await listQueues();
    if (signal.aborted) return;
    body.replaceChildren(...(queues.length === 0
      ? [h("tr", {}, h("td", { colspan: 4, class: "muted" }, "Nothing is pending or running."))]
      : queues.map((q) => h("tr", { "data-capability": q.capability },
        h("td", {}, h("a", { href: `#/tasks?capability=${encodeURIComponent(q.capability)}` }, q.capability)), h("td", { class: "num" }, q.pending), h("td", { class: "num" }, q.running),
        h("td", { class: "num" }, q.oldestPendingMs > 0 ? age(q.oldestPendingMs) : "—")))));
    main.querySelector(".live-error")?.replaceChildren();
  });
}

let current: AbortController | undefined;

/** Draws the page the hash names (the sign-in page until signed in). */
function route(): void {
  current?.abort();
  current = new AbortController();
  const [path = "", search = ""] = location.hash.replace(/^#/, "").split("?");
  const parts = path.split("/").filter(Boolean);
  for (const link of document.querySelectorAll("header nav a")) link.classList.toggle("active", link.getAttribute("href") === `#/${parts[0] ?? ""}`);
  const who = document.getElementById("who")!;
  const subject = signedIn();
  who.replaceChildren(...(subject ? [`${subject} · `, h("a", { href: "#/tasks", onclick: () => (signOut(), route()) }, "sign out")] : []));
  if (!subject) return signInPage();
  if (parts[0] === "tasks" && parts[1]) return taskPage(current.signal, decodeURIComponent(parts[1]));
  if (parts[0] === "workflows" && parts[1]) return workflowPage(current.signal, decodeURIComponent(parts[1]));
  if (parts[0] === "submit") return submitPage();
  if (parts[0] === "workers") return workersPage(current.signal);
  if (parts[0] === "queues") return queuesPage(current.signal);
  return tasksPage(current.signal, new URLSearchParams(search));
}

addEventListener("hashchange", route);
route();
