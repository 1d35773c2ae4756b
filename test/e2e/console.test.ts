import { Metadata } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { IdentityServiceService } from "@taskmesh/contracts/gen/taskmesh/identity/v1/identity";
import { TaskServiceService } from "@taskmesh/contracts/gen/taskmesh/coordinator/v1/task_service";
import { createClient } from "@taskmesh/kit";
import { jaegerUiForTests, launchBrowser, screenshotPath } from "../support/browser.js";
import { startUp, type UpRun } from "../support/up.js";

// The console as a user meets it under `taskmesh up`: the page at the edge's
// /ui, signed in with a token or an API key, submitting, watching and
// cancelling tasks, and looking at the workers and the queues, in Chromium.
describe("the console at the edge's /ui under up", { timeout: 120_000 }, () => {
  let upRun: UpRun;
  let base: string;
  let token: string;

  const jaegerUi = jaegerUiForTests();

  beforeAll(async () => {
    upRun = await startUp([], jaegerUi ? { TASKMESH_JAEGER_UI_DIR: jaegerUi } : {});
    base = `http://${upRun.edge}`;
    token = await upRun.token();
  }, 400_000); // waiting for the lock included

  afterAll(async () => {
    await upRun?.down();
  }, 60_000);

  it("up prints its address; the page and its files answer without a token, the API behind it still needs one", async () => {
    expect(upRun.printed).toContain(`console    ${base}/ui`);
    const page = await fetch(`${base}/ui`);
    expect([page.status, page.headers.get("content-type")]).toEqual([200, "text/html; charset=utf-8"]);
    expect(await page.text()).toContain("/ui/console.js");
    const code = await fetch(`${base}/ui/console.js`);
    expect([code.status, code.headers.get("content-type")]).toEqual([200, "text/javascript; charset=utf-8"]);
    expect((await code.arrayBuffer()).byteLength).toBeLessThan(200_000);
    expect(await (await fetch(`${base}/ui/config.json`)).json()).toEqual({ jaegerUrl: `http://127.0.0.1:${upRun.env.TASKMESH_JAEGER_PORT}` });
    expect((await fetch(`${base}/v1/workers`)).status).toBe(401);
  });

  it("in Chromium: sign in with a token, submit an echo and see it succeed with its timeline, open its trace in the Jaeger UI, cancel a sleep, list tasks, workers and queues", async () => {
    const browser = await launchBrowser();
    try {
      const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
      await page.goto(`${base}/ui`);
      // A secret that is neither: the edge's answer, shown.
      await page.locator("input[name=secret]").fill("not-a-key");
      await page.getByRole("button", { name: "Sign in" }).click();
      await page.getByRole("alert").waitFor();
      await page.locator("input[name=secret]").fill(token);
      await page.getByRole("button", { name: "Sign in" }).click();
      await page.locator("table#tasks").waitFor();

      // Submit from the form: the task's page follows it to SUCCEEDED.
      await page.getByRole("link", { name: "Submit", exact: true }).click();
      await page.locator("select[name=capability] option[value=echo]").waitFor({ state: "attached" });
      await page.locator("select[name=capability]").selectOption("echo");
      await page.locator("textarea[name=input]").fill(JSON.stringify({ text: "from the console" }));
      await page.getByRole("button", { name: "Submit", exact: true }).click();
      await page.locator("[data-state=SUCCEEDED]").waitFor({ timeout: 20_000 });
      const echoId = decodeURIComponent(new URL(page.url()).hash.split("/")[2]!);
      expect(await page.locator("#timeline li").evaluateAll((items) => items.map((li) => li.getAttribute("data-kind")))).toEqual(["SUBMITTED", "STARTED", "SUCCEEDED"]);
      expect(await page.locator("#output").innerText()).toContain("from the console");
      const tasks = createClient(TaskServiceService, upRun.edge);
      const metadata = new Metadata();
      metadata.set("authorization", `Bearer ${token}`);
      try {
        const { task } = await tasks.getTask({ id: echoId, view: 0 }, { metadata });
        expect(await page.locator("#trace-link").getAttribute("href")).toBe(`http://127.0.0.1:${upRun.env.TASKMESH_JAEGER_PORT}/trace/${task!.traceId}`);
      } finally {
        tasks.close();
      }
      await page.screenshot({ path: screenshotPath("console-task"), fullPage: true });

      // The trace link opens the task's trace in the Jaeger UI, drawn with the spans of its hops.
      expect(jaegerUi, "a built jaeger-ui folder (TASKMESH_JAEGER_UI_DIR, or shared/jaeger-ui beside the checkout)").toBeDefined();
      const [jaegerPage] = await Promise.all([page.context().waitForEvent("page"), page.locator("#trace-link").click()]);
      const drawn = async () => new Set(await jaegerPage.locator(".span-svc-name").allInnerTexts().then((texts) => texts.map((t) => t.trim().split(/\s+/)[0]!)));
      await expect.poll(async () => {
        if ((await drawn()).size < 3) await jaegerPage.reload(); // spans reach Jaeger in batches, about a second apart
        return (await drawn()).size;
      }, { timeout: 30_000, interval: 1000 }).toBeGreaterThanOrEqual(3);
      expect([...(await drawn())]).toContain("edge");
      await jaegerPage.close();

      // A long sleep, cancelled from its page: the worker is told, the task ends CANCELLED.
      await page.getByRole("link", { name: "Submit", exact: true }).click();
      await page.locator("select[name=capability] option[value=sleep]").waitFor({ state: "attached" });
      await page.locator("select[name=capability]").selectOption("sleep");
      await page.locator("textarea[name=input]").fill(JSON.stringify({ ms: 60_000 }));
      await page.getByRole("button", { name: "Submit", exact: true }).click();
      await page.locator("[data-state=RUNNING]").waitFor({ timeout: 20_000 });
      await page.locator("#cancel").click();
      await page.locator("[data-state=CANCELLED]").waitFor({ timeout: 20_000 });
      expect(await page.locator("#timeline li").last().getAttribute("data-kind")).toBe("CANCELLED");
      await page.locator("#cancel").waitFor({ state: "detached" });

      // The list, filtered by state: the echo is there, the cancelled sleep is not.
      await page.goto(`${base}/ui#/tasks?state=SUCCEEDED`);
      await page.locator(`tr[data-task="${echoId}"]`).waitFor();
      expect(await page.locator("table#tasks [data-state]").evaluateAll((els) => [...new Set(els.map((e) => e.getAttribute("data-state")))])).toEqual(["SUCCEEDED"]);
      await page.screenshot({ path: screenshotPath("console-tasks") });

      await page.getByRole("link", { name: "Workers" }).click();
      await page.locator("tr[data-worker=worker-0]").waitFor();
      expect(await page.locator("tr[data-worker=worker-0]").innerText()).toMatch(/CONNECTED[\s\S]*echo/);
      await page.screenshot({ path: screenshotPath("console-workers") });

      // Something to show in the queues: more sleeps than the workers have slots (16), for a while.
      await Promise.all(Array.from({ length: 20 }, () => fetch(`${base}/v1/tasks`, {
        method: "POST", headers: { authorization: `Bearer ${token}`, "content-type": "application/json" }, body: JSON.stringify({ capability: "sleep", input: { ms: 4000 } }),
      }).then((r) => r.arrayBuffer())));
      await page.getByRole("link", { name: "Queues" }).click();
      await page.locator("tr[data-capability=sleep]").waitFor({ timeout: 10_000 });
      expect(await page.locator("tr[data-capability=sleep] td.num").first().innerText()).toMatch(/^\d+$/);
      await page.screenshot({ path: screenshotPath("console-queues") });
    } finally {
      await browser.close();
    }
  });

  it("in Chromium: a workflow's page draws its graph, each task in its state and each dependency an arrow, live until it ends; a task links back to it", async () => {
    const submitted = await fetch(`${base}/v1/workflows`, {
      method: "POST", headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify({ name: "console graph", tasks: [
        { name: "fetch", task: { capability: "echo", input: { text: "hi" } } },
        { name: "nap", dependsOn: ["fetch"], task: { capability: "sleep", input: { ms: 2500 } } },
        { name: "digest", dependsOn: ["fetch"], task: { capability: "hash", input: { text: { $ref: "fetch.text" } } } },
        { name: "join", dependsOn: ["nap", "digest"], task: { capability: "echo", input: { sha: { $ref: "digest.sha256" } } } },
      ] }),
    });
    expect(submitted.status).toBe(200);
    const { workflow } = (await submitted.json()) as { workflow: { id: string } };
    const browser = await launchBrowser();
    try {
      const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
      await page.goto(`${base}/ui`);
      await page.locator("input[name=secret]").fill(token);
      await page.getByRole("button", { name: "Sign in" }).click();
      await page.locator("table#tasks").waitFor();
      await page.goto(`${base}/ui#/workflows/${workflow.id}`);
      // Drawn while it runs: the nap is RUNNING, the join still WAITING for it.
      await page.locator("svg#graph g.task[data-name=nap][data-state=RUNNING]").waitFor({ timeout: 20_000 });
      expect(await page.locator("svg#graph g.task[data-name=join]").getAttribute("data-state")).toBe("WAITING");
      expect(await page.locator("svg#graph line.edge").evaluateAll((lines) => lines.map((l) => `${l.getAttribute("data-from")}→${l.getAttribute("data-to")}`).sort()))
        .toEqual(["digest→join", "fetch→digest", "fetch→nap", "nap→join"]);
      await page.locator("#workflow-state[data-state=SUCCEEDED]").waitFor({ timeout: 30_000 });
      expect(await page.locator("svg#graph g.task").evaluateAll((gs) => gs.map((g) => `${g.getAttribute("data-name")}=${g.getAttribute("data-state")}`)))
        .toEqual(["fetch=SUCCEEDED", "nap=SUCCEEDED", "digest=SUCCEEDED", "join=SUCCEEDED"]);
      // Columns by depth: fetch, then nap and digest, then join.
      const x = async (name: string) => Number(await page.locator(`svg#graph g.task[data-name=${name}] rect`).getAttribute("x"));
      expect((await x("fetch")) < (await x("nap")) && (await x("nap")) === (await x("digest")) && (await x("digest")) < (await x("join"))).toBe(true);
      await page.screenshot({ path: screenshotPath("console-workflow"), fullPage: true });
      await page.locator("svg#graph g.task[data-name=join] a").click();
      await page.locator("#workflow-link").waitFor();
      expect(await page.locator("#output").innerText()).toContain("sha");
      await page.locator("#workflow-link").click();
      await page.locator("svg#graph").waitFor();
    } finally {
      await browser.close();
    }
  });

  it("in Chromium: sign in with an API key, exchanged for access tokens at the edge", async () => {
    const identity = createClient(IdentityServiceService, upRun.edge);
    const metadata = new Metadata();
    metadata.set("authorization", `Bearer ${token}`);
    const { secret } = await identity.createApiKey({ name: "console-e2e", scopes: ["tasks:read"], subject: "console-reader", ttl: undefined }, { metadata }).finally(() => identity.close());
    const browser = await launchBrowser();
    try {
      const page = await browser.newPage();
      await page.goto(`${base}/ui`);
      await page.locator("input[name=secret]").fill(secret);
      await page.getByRole("button", { name: "Sign in" }).click();
      await page.locator("table#tasks").waitFor();
      expect(await page.locator("#who").innerText()).toContain("console-reader");
    } finally {
      await browser.close();
    }
  });
});
