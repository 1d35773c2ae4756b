import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { freePort } from "@taskmesh/local/secrets";
import { lineHasTrace } from "../../../packages/cli/src/commands/log-trace.js";
import { uuidv7 } from "@taskmesh/kit";
import { createTestDatabase } from "../../support/postgres.js";
import { startService, waitForServing } from "../../support/processes.js";

const run = promisify(execFile);
const TRACE = "4bf92f3577b34da6a3ce929d0e0e4736";

describe("service logs and traces", () => {
  it("a service's log lines written inside a call carry the caller's trace_id and a span_id, and --trace finds them", async () => {
    const db = await createTestDatabase("metrics_log_trace");
    const address = `127.0.0.1:${await freePort()}`;
    const proc = startService("ledger", { DATABASE_URL: db.url, TASKMESH_LISTEN: address, LOG_LEVEL: "debug" });
    try {
      await waitForServing(address, proc);
      const got = await run("grpcurl", [
        "-plaintext", "-H", `traceparent: 00-${TRACE}-00f067aa0ba902b7-01`, "-d", JSON.stringify({ id: uuidv7() }), address, "taskmesh.ledger.v1.LedgerService/GetTask",
      ], { timeout: 10_000 }).then(() => "found", (e: { stderr: string }) => e.stderr);
      expect(got).toMatch(/NotFound/);
      await new Promise((r) => setTimeout(r, 200));
    } finally {
      proc.child.kill("SIGTERM");
      expect(await proc.exited).toBe(0);
      await db.drop();
    }
    const lines = proc.output().split("\n").filter((l) => l.startsWith("{")).map((l) => ({ raw: l, json: JSON.parse(l) as Record<string, unknown> }));
    const failed = lines.find((l) => l.json.msg === "call failed");
    expect(failed?.json).toMatchObject({ service: "ledger", method: "/taskmesh.ledger.v1.LedgerService/GetTask", trace_id: TRACE });
    expect(failed?.json.span_id).toMatch(/^[0-9a-f]{16}$/);
    const listening = lines.find((l) => l.json.msg === "listening");
    expect(listening?.json).not.toHaveProperty("trace_id");
    const ofTrace = lines.filter((l) => lineHasTrace(l.raw, TRACE));
    expect(ofTrace.length).toBeGreaterThan(0);
    expect(ofTrace.every((l) => l.json.trace_id === TRACE)).toBe(true);
    expect(ofTrace.length).toBeLessThan(lines.length);
  });
});
