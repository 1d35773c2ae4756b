import { describe, expect, it } from "vitest";
import { LineSplitter, lineHasTrace, parseTraceId, traceLines } from "../../../packages/cli/src/commands/log-trace.js";

const A = "0af7651916cd43dd8448eb211c80319c";
const B = "4bf92f3577b34da6a3ce929d0e0e4736";
const json = (fields: Record<string, unknown>): string => JSON.stringify({ level: "info", service: "ledger", ...fields });

describe("taskmesh logs --trace", () => {
  it("takes a trace id or a traceparent, and refuses anything else", () => {
    expect(parseTraceId(A)).toBe(A);
    expect(parseTraceId(A.toUpperCase())).toBe(A);
    expect(parseTraceId(`00-${A}-b7ad6b7169203331-01`)).toBe(A);
    expect(parseTraceId("0af76519")).toBeUndefined();
    expect(parseTraceId("0".repeat(32))).toBeUndefined();
    expect(parseTraceId(`${A}x`)).toBeUndefined();
  });

  it("keeps a JSON line by its trace_id, and a text line that names the id", () => {
    expect(lineHasTrace(json({ trace_id: A, span_id: "b7ad6b7169203331", msg: "call failed" }), A)).toBe(true);
    expect(lineHasTrace(json({ trace_id: B, msg: "call failed" }), A)).toBe(false);
    // A line of another trace that mentions A in a field (e.g. a task's own trace id) is not A's.
    expect(lineHasTrace(json({ trace_id: B, traceId: A }), A)).toBe(false);
    expect(lineHasTrace(json({ msg: "listening" }), A)).toBe(false);
    expect(lineHasTrace(`[2026-11-25T15:00:00Z] "POST /taskmesh.ledger.v1.LedgerService/GetTask" 200 traceparent=00-${A}-b7ad6b7169203331-01`, A)).toBe(true);
    expect(lineHasTrace("[2026-11-25T15:00:00Z] envoy started", A)).toBe(false);
    expect(lineHasTrace(`{not json ${A}`, A)).toBe(true);
  });

  it("merges the trace's lines of several logs in time order, untimed lines after their predecessor", () => {
    const logs = new Map([
      ["coordinator-0", [json({ time: "2026-11-25T15:00:00.100Z", trace_id: A, msg: "submit" }), json({ time: "2026-11-25T15:00:00.150Z", trace_id: B, msg: "other" }), json({ time: "2026-11-25T15:00:00.300Z", trace_id: A, msg: "assigned" })].join("\n")],
      ["ledger-0", [json({ time: "2026-11-25T15:00:00.200Z", trace_id: A, msg: "created" }), `a stack line of ${A}`, ""].join("\n")],
      ["redis", "ready\n"],
    ]);
    expect(traceLines(logs, A).map((l) => `${l.process}: ${l.line.includes("{") ? (JSON.parse(l.line) as { msg: string }).msg : l.line}`)).toEqual([
      "coordinator-0: submit", "ledger-0: created", `ledger-0: a stack line of ${A}`, "coordinator-0: assigned",
    ]);
  });

  it("splits chunks into whole lines, holding a partial line until its newline", () => {
    const split = new LineSplitter();
    expect(split.push('{"a":1}\n{"b"')).toEqual(['{"a":1}']);
    expect(split.push(':2}\n')).toEqual(['{"b":2}']);
    expect(split.push("tail")).toEqual([]);
    expect(split.flush()).toEqual(["tail"]);
    expect(split.flush()).toEqual([]);
  });
});
