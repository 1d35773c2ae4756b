import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { ROOT } from "@taskmesh/local/provision/versions";

const run = promisify(execFile);

/** `npx taskmesh open <args>` with the fixed ports moved, as a user's variables move them; its output and exit code. */
async function open(...args: string[]): Promise<{ stdout: string; stderr: string; code: number }> {
  const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: "1", TASKMESH_EDGE_PORT: "18080", TASKMESH_EDGE_ADMIN_PORT: "19901", TASKMESH_JAEGER_PORT: "26686" };
  delete env.DISPLAY;
  delete env.WAYLAND_DISPLAY;
  try {
    const { stdout, stderr } = await run(process.execPath, [join(ROOT, "scripts/taskmesh.mjs"), "open", ...args], { env, timeout: 20_000 });
    return { stdout, stderr, code: 0 };
  } catch (error) {
    const e = error as { stdout: string; stderr: string; code: number };
    return { stdout: e.stdout, stderr: e.stderr, code: e.code };
  }
}

describe("npx taskmesh open <page>", () => {
  it("prints each page's address, on the ports the run's variables set", async () => {
    expect(await open("ui")).toMatchObject({ stdout: "http://127.0.0.1:18080/ui\n", code: 0 });
    expect(await open("docs")).toMatchObject({ stdout: "http://127.0.0.1:18080/docs\n", code: 0 });
    expect(await open("jaeger")).toMatchObject({ stdout: "http://127.0.0.1:26686\n", code: 0 });
    expect(await open("admin")).toMatchObject({ stdout: "http://127.0.0.1:19901\n", code: 0 });
  });

  it("an unknown page exits 2 naming the pages; --browser without a desktop prints the address and exits 1 saying why", async () => {
    const unknown = await open("console");
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('unknown page "console": one of ui, docs, jaeger, admin');
    const browser = await open("docs", "--browser");
    expect(browser).toMatchObject({ stdout: "http://127.0.0.1:18080/docs\n", code: 1 });
    expect(browser.stderr).toContain("no desktop to open it in");
  });
});
