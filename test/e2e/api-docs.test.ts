import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { launchBrowser, screenshotPath } from "../support/browser.js";
import { ROOT } from "../support/processes.js";
import { startUp, until, type UpRun } from "../support/up.js";

/** The generated OpenAPI document (packages/contracts/gen/openapi), as the edge must serve it. */
const OPENAPI = join(ROOT, "packages/contracts/gen/openapi/taskmesh.swagger.json");

interface OpenApi {
  info: { title: string };
  paths: Record<string, Record<string, { operationId: string; security?: unknown[] }>>;
  securityDefinitions: Record<string, { type: string; name: string; in: string }>;
}

// The API docs as a user meets them under `taskmesh up`: Swagger UI at the
// edge's /docs on the OpenAPI document generated from proto/, with "Try it
// out" calling the edge with the user's token.
describe("the API docs at the edge's /docs under up", { timeout: 90_000 }, () => {
  let upRun: UpRun;
  let base: string;

  beforeAll(async () => {
    upRun = await startUp();
    base = `http://${upRun.edge}`;
  }, 400_000); // waiting for the lock included

  afterAll(async () => {
    await upRun?.down();
  }, 60_000);

  it("up prints the pages' addresses: the API docs, the Jaeger UI and the edge's admin page", () => {
    expect(upRun.printed).toContain(`API docs   ${base}/docs`);
    expect(upRun.printed).toContain(`Jaeger UI  http://127.0.0.1:${upRun.env.TASKMESH_JAEGER_PORT}`);
    expect(upRun.printed).toContain(`edge admin http://127.0.0.1:${upRun.env.TASKMESH_EDGE_ADMIN_PORT}`);
  });

  it("the page, the OpenAPI document and Swagger UI's files answer without a token; the API itself still needs one", async () => {
    const page = await fetch(`${base}/docs`);
    expect(page.status).toBe(200);
    expect(page.headers.get("content-type")).toBe("text/html; charset=utf-8");
    expect(await page.text()).toContain("/docs/swagger-ui-bundle.js");

    const document = await fetch(`${base}/docs/openapi.json`);
    expect(document.status).toBe(200);
    expect(document.headers.get("content-type")).toBe("application/json");
    const served = (await document.json()) as OpenApi;
    expect(served).toEqual(JSON.parse(readFileSync(OPENAPI, "utf8")));
    expect(Object.keys(served.paths)).toEqual(expect.arrayContaining(["/v1/tasks", "/v1/tasks/{id}", "/v1/tasks/{id}:cancel", "/v1/tokens", "/v1/config/{key}", "/v1/events"]));
    expect(served.securityDefinitions.bearer).toMatchObject({ type: "apiKey", name: "Authorization", in: "header" });

    for (const [file, type] of [["swagger-ui-bundle.js", "text/javascript"], ["swagger-ui.css", "text/css"], ["favicon-32x32.png", "image/png"]] as const) {
      const response = await fetch(`${base}/docs/${file}`);
      expect(response.status, file).toBe(200);
      expect(response.headers.get("content-type"), file).toBe(type);
      expect(Buffer.from(await response.arrayBuffer()).equals(readFileSync(join(ROOT, "node_modules/swagger-ui-dist", file))), `${file} whole`).toBe(true);
    }
    // Only /docs and what is below it are open: a neighbouring path still needs a token.
    expect((await fetch(`${base}/docsx`)).status).toBe(401);
    expect((await fetch(`${base}/v1/tasks`)).status).toBe(401);
  });

  it("in Chromium: Try it out without a token is refused; after Authorize (the token pasted bare) SubmitTask creates a task, and GetTask shows it SUCCEEDED", async () => {
    const token = await upRun.token();
    const browser = await launchBrowser();
    try {
      const page = await browser.newPage({ viewport: { width: 1280, height: 1100 } });
      await page.goto(`${base}/docs`);
      await page.locator("#operations-TaskService-TaskService_SubmitTask").waitFor({ timeout: 20_000 });
      const listed = await page.locator(".opblock-summary-path").allInnerTexts();
      expect(listed).toEqual(expect.arrayContaining(["/v1/tasks", "/v1/tasks/{id}", "/v1/tasks/{id}:cancel", "/v1/tokens"]));
      await page.screenshot({ path: screenshotPath("api-docs"), fullPage: false });

      const submit = page.locator("#operations-TaskService-TaskService_SubmitTask");
      await submit.locator(".opblock-summary").click();
      await submit.getByRole("button", { name: "Try it out" }).click();
      await submit.locator("textarea.body-param__text").fill(JSON.stringify({ capability: "echo", input: { text: "from the API docs" } }));
      /** Presses an operation's Execute and reads the answer the page shows: its status cell and body. */
      const execute = async (operation: typeof submit): Promise<{ status: string; body: string }> => {
        await operation.getByRole("button", { name: "Execute" }).click();
        const status = operation.locator(".live-responses-table tbody .response-col_status").first();
        await status.waitFor({ timeout: 15_000 });
        return { status: (await status.innerText()).trim(), body: await operation.locator(".live-responses-table tbody .microlight").first().innerText() };
      };

      const refused = await execute(submit);
      expect(refused.status).toMatch(/^401/);
      expect(refused.body).toContain("AUTH_MISSING_TOKEN");

      await page.getByRole("button", { name: /Authorize/ }).first().click();
      await page.locator(".auth-container input").fill(token);
      await page.locator(".auth-btn-wrapper button.authorize").click();
      await page.locator(".auth-btn-wrapper button.btn-done").click();
      await submit.getByRole("button", { name: "Clear" }).click();

      const created = await execute(submit);
      expect(created.status, created.body).toMatch(/^200/);
      const { task } = JSON.parse(created.body) as { task: { id: string; capability: string; input: unknown } };
      expect(task).toMatchObject({ capability: "echo", input: { text: "from the API docs" } });
      await submit.screenshot({ path: screenshotPath("api-docs-try-it-out") });

      // The task the page submitted is real: it runs to SUCCEEDED.
      const authorization = `Bearer ${token}`;
      const finished = await until("the docs' task to succeed", 15_000, async () => {
        const { task: now } = (await (await fetch(`${base}/v1/tasks/${task.id}`, { headers: { authorization } })).json()) as { task: { state: string; output?: unknown } };
        return now.state === "TASK_STATE_SUCCEEDED" ? now : undefined;
      });
      expect(finished.output).toEqual({ text: "from the API docs" });

      // GET /v1/tasks/{id} from the page shows it SUCCEEDED, with its output.
      const get = page.locator("#operations-TaskService-TaskService_GetTask");
      await get.locator(".opblock-summary").click();
      await get.getByRole("button", { name: "Try it out" }).click();
      await get.locator('tr[data-param-name="id"] input').fill(task.id);
      const read = await execute(get);
      expect(read.status, read.body).toMatch(/^200/);
      expect(JSON.parse(read.body)).toMatchObject({ task: { id: task.id, state: "TASK_STATE_SUCCEEDED", output: { text: "from the API docs" } } });
    } finally {
      await browser.close();
    }
  }, 120_000);
});
