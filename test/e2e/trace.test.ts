import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { jaegerUiForTests, launchBrowser, screenshotPath } from "../support/browser.js";
import { startUp, type UpRun } from "../support/up.js";

/** A task as the edge's HTTP/JSON transcoding returns it (the fields this test reads). */
interface TaskJson {
  id: string;
  state: string;
  traceId: string;
  traceparent: string;
}

/** One trace from Jaeger's query API, `GET /api/traces/<traceId>` (v1 JSON, which Jaeger v2 still serves). */
interface JaegerTrace {
  traceID: string;
  spans: Array<{
    spanID: string;
    operationName: string;
    processID: string;
    references: Array<{ refType: string; traceID: string; spanID: string }>;
    tags: Array<{ key: string; value: unknown }>;
  }>;
  processes: Record<string, { serviceName: string }>;
}

/** A span of the trace with its process's service name and its parent's span id (none for a root). */
interface Span {
  id: string;
  service: string;
  operation: string;
  parent: string | undefined;
  tags: Record<string, unknown>;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `probe` every 250 ms until it returns a value other than undefined, or fails after `ms` with `why()`. */
async function until<T>(what: string, ms: number, probe: () => Promise<T | undefined>, why: () => string): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}; ${why()}`);
    await sleep(250);
  }
}

/** The spans of a Jaeger trace, flattened: service name and parent (CHILD_OF) per span. */
function spansOf(trace: JaegerTrace): Span[] {
  return trace.spans.map((s) => ({
    id: s.spanID,
    service: trace.processes[s.processID]?.serviceName ?? "(no process)",
    operation: s.operationName,
    parent: s.references.find((r) => r.refType === "CHILD_OF")?.spanID,
    tags: Object.fromEntries(s.tags.map((t) => [t.key, t.value])),
  }));
}

/** `span` and its ancestors up to the root, nearest first; undefined while an ancestor has not arrived yet. */
/** A Postgres statement's span. */
function isStatement(s: Span): boolean {
  return s.tags["db.system"] === "postgresql" || s.tags["db.system.name"] === "postgresql";
}

function ancestry(spans: Span[], span: Span): Span[] | undefined {
  const byId = new Map(spans.map((s) => [s.id, s]));
  const chain = [span];
  for (let current = span; current.parent !== undefined; ) {
    const parent = byId.get(current.parent);
    if (parent === undefined || chain.includes(parent)) return undefined;
    chain.push(parent);
    current = parent;
  }
  return chain;
}

// The whole mesh as `taskmesh up -d` runs it (default replicas), on its own state dir and ports;
// one task goes in through the edge and its whole path must come out as one trace in Jaeger.
describe("tracing under up: one task through the edge is one trace in Jaeger", { timeout: 90_000 }, () => {
  let upRun: UpRun;
  /** The task of the first test, SUCCEEDED, and its SubmitTask span's id. */
  let traced: { traceId: string; submitSpan: string } | undefined;

  // The real Jaeger UI (a built jaeger-ui folder): the last test opens the task's trace in it.
  const jaegerUi = jaegerUiForTests();

  beforeAll(async () => {
    upRun = await startUp([], jaegerUi ? { TASKMESH_JAEGER_UI_DIR: jaegerUi } : {});
  }, 400_000); // waiting for the lock included

  afterAll(async () => {
    await upRun?.down();
  }, 60_000);

  it("edge → coordinator sidecar → coordinator → its in-process ledger write, under the trace id the task row holds", async () => {
    const edge = `http://${upRun.edge}`;
    const jaeger = `http://127.0.0.1:${upRun.env.TASKMESH_JAEGER_PORT}`;

    const authorization = `Bearer ${await upRun.token()}`;
    const submitted = await fetch(`${edge}/v1/tasks`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization },
      body: JSON.stringify({ capability: "echo", input: { traced: true } }),
    });
    expect(submitted.status, await submitted.clone().text()).toBe(200);
    const { id } = ((await submitted.json()) as { task: TaskJson }).task;
    let last: TaskJson | undefined;
    const task = await until("the task to succeed", 15_000, async () => {
      last = ((await (await fetch(`${edge}/v1/tasks/${id}`, { headers: { authorization } })).json()) as { task: TaskJson }).task;
      return last.state === "TASK_STATE_SUCCEEDED" ? last : undefined;
    }, () => `last seen: ${JSON.stringify(last)}`);
    expect(task.traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(task.traceId).not.toBe("0".repeat(32));

    // Spans arrive in batches (the services' exporters every 5 s); wait for the whole submit path.
    let seen = "nothing yet";
    const { trace, spans, path, create } = await until("the submit's spans in Jaeger", 30_000, async () => {
      const response = await fetch(`${jaeger}/api/traces/${task.traceId}`);
      if (response.status !== 200) return void (seen = `HTTP ${response.status}`);
      const { data } = (await response.json()) as { data: JaegerTrace[] };
      const trace = data[0];
      if (trace === undefined) return undefined;
      const spans = spansOf(trace);
      seen = `services ${[...new Set(spans.map((s) => s.service))].sort().join(", ")}`;
      // The submit's CreateTasks (the ledger write, run in the coordinator's process), and everything above it up to the root.
      const create = spans.find((s) => s.service === "coordinator" && s.operation.endsWith("LedgerService/CreateTasks"));
      const chain = create && ancestry(spans, create);
      if (chain === undefined || !chain.some((s) => s.service === "edge")) return undefined;
      if (!spans.some((s) => isStatement(s) && ancestry(spans, s)?.includes(create!))) return undefined;
      return { trace, spans, path: chain.reverse(), create };
    }, () => `Jaeger has ${seen} for trace ${task.traceId}`);

    // One trace: the one whose id the coordinator stored on the task row.
    expect(trace.traceID).toBe(task.traceId);
    const services = new Set(spans.map((s) => s.service));
    expect(services).toContain("edge");
    expect(services).toContain("coordinator");
    const sidecars = [...services].filter((name) => /^[a-z]+-\d+-sidecar$/.test(name));
    expect(sidecars.some((name) => name.startsWith("coordinator-")), sidecars.join(", ")).toBe(true);

    // The edge started the trace: its span is the root, and the ledger write descends from it
    // through each hop in order (the edge adds an ingress and an egress span, the inbound sidecar an ingress one); the write
    // itself is no hop: the coordinator commits it on its own Postgres connection.
    const root = path[0]!;
    expect(root.service).toBe("edge");
    expect(root.parent).toBeUndefined();
    expect(spans.filter((s) => s.parent === undefined).map((s) => s.service)).toEqual(["edge"]);
    const hops = path.map((s) => s.service).filter((name, i, all) => name !== all[i - 1]);
    expect(hops.map((name) => name.replace(/-\d+-sidecar$/, "-sidecar"))).toEqual([
      "edge", "coordinator-sidecar", "coordinator",
    ]);
    // Its statements are below it, in the same trace.
    expect(spans.some((s) => isStatement(s) && ancestry(spans, s)?.includes(create!)), "a statement under CreateTasks").toBe(true);
    // The task row's traceparent names the coordinator's SubmitTask span of this trace.
    const submit = path.find((s) => s.service === "coordinator" && s.operation.endsWith("TaskService/SubmitTask"));
    expect(submit, JSON.stringify(path)).toBeDefined();
    expect(task.traceparent).toBe(`00-${task.traceId}-${submit!.id}-01`);
    traced = { traceId: task.traceId, submitSpan: submit!.id };
  });

  it("the rest of the task's life joins that trace: Postgres statements, the dispatch, the worker's execution, the recorded result, and the relay's Kafka produce", async () => {
    expect(traced, "the first test's task").toBeDefined();
    const { traceId, submitSpan } = traced!;
    const jaeger = `http://127.0.0.1:${upRun.env.TASKMESH_JAEGER_PORT}`;
    const wanted = {
      postgres: (s: Span) => s.service === "coordinator" && isStatement(s),
      dispatch: (s: Span) => s.service === "coordinator" && s.operation === "dispatch",
      execute: (s: Span) => s.service === "worker" && s.operation === "execute echo",
      result: (s: Span) => s.service === "coordinator" && s.operation === "record result",
      // The relay's one span per event: its Kafka produce.
      produce: (s: Span) => s.service === "ledger" && s.operation === "taskmesh.tasks publish" && s.tags["span.kind"] === "producer"
        && s.tags["messaging.system"] === "kafka" && s.tags["taskmesh.task.sequence"] !== undefined,
    };
    let missing: string[] = Object.keys(wanted);
    const spans = await until("the task's later spans in Jaeger", 30_000, async () => {
      const response = await fetch(`${jaeger}/api/traces/${traceId}`);
      if (response.status !== 200) return undefined;
      const trace = ((await response.json()) as { data: JaegerTrace[] }).data[0];
      if (trace === undefined) return undefined;
      const spans = spansOf(trace);
      missing = Object.entries(wanted).filter(([, is]) => !spans.some(is)).map(([name]) => name);
      return missing.length === 0 ? spans : undefined;
    }, () => `missing: ${missing.join(", ")}`);
    // Still one trace with one root, the edge's.
    expect(spans.filter((s) => s.parent === undefined).map((s) => s.service)).toEqual(["edge"]);
    // The dispatch, the worker's execution and the relay continue from the submit (the traceparent on the task row).
    for (const name of ["dispatch", "execute", "produce"] as const) {
      expect(spans.filter(wanted[name]).every((s) => s.parent === submitSpan), name).toBe(true);
    }
    // One produce per event of the task (it was created and it succeeded, at least).
    expect(spans.filter(wanted.produce).length).toBeGreaterThanOrEqual(2);
    // The result's ledger call runs under the coordinator's "record result" span.
    const results = new Set(spans.filter(wanted.result).map((s) => s.id));
    expect(spans.some((s) => s.parent !== undefined && results.has(s.parent) && /LedgerService\/(CompleteTasks?|FailTask)/.test(s.operation)), "a ledger call under record result").toBe(true);
  });
  it("the Jaeger UI draws the task's trace in a browser: the real UI, with the spans of at least five components", async () => {
    expect(jaegerUi, "a built jaeger-ui folder (TASKMESH_JAEGER_UI_DIR, or shared/jaeger-ui beside the checkout)").toBeDefined();
    expect(traced, "the first test's task").toBeDefined();
    const jaeger = `http://127.0.0.1:${upRun.env.TASKMESH_JAEGER_PORT}`;
    const trace = ((await (await fetch(`${jaeger}/api/traces/${traced!.traceId}`)).json()) as { data: JaegerTrace[] }).data[0]!;
    const services = new Set(spansOf(trace).map((s) => s.service));
    expect(services.size, [...services].join(", ")).toBeGreaterThanOrEqual(5);

    const browser = await launchBrowser();
    try {
      const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
      await page.goto(`${jaeger}/search`);
      await expect.poll(() => page.title(), { timeout: 15_000 }).toMatch(/Jaeger UI/);
      expect(await page.content()).not.toContain("This is not the Jaeger UI you are looking for");

      await page.goto(`${jaeger}/trace/${traced!.traceId}`);
      // Each span row names its service; collect the names the page drew.
      const drawn = async () => new Set(await page.locator(".span-svc-name").allInnerTexts().then((texts) => texts.map((t) => t.trim().split(/\s+/)[0]!)));
      await expect.poll(async () => (await drawn()).size, { timeout: 20_000 }).toBeGreaterThanOrEqual(5);
      const names = await drawn();
      for (const name of names) expect(services, `a drawn service name: ${name}`).toContain(name);
      await page.screenshot({ path: screenshotPath("jaeger-trace"), fullPage: true });
    } finally {
      await browser.close();
    }
  }, 120_000);
});
