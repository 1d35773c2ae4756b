import { describe, expect, it } from "vitest";
import { RateLimitResponse_Code } from "@taskmesh/contracts/gen/envoy/service/ratelimit/v3/rls";
import { counterKey, parseFailureMode, parseLimits, rateLimitHandlers, type HitCounter } from "../../../services/ratelimit/src/index.js";
import { createLogger, type CallContext } from "@taskmesh/kit";

const SUBMIT = "/taskmesh.coordinator.v1.TaskService/SubmitTask";
const ISSUE = "/taskmesh.identity.v1.IdentityService/IssueToken";
const e = (key: string, value: string) => ({ key, value });

describe("parseLimits", () => {
  it("reads a set of named limits", () => {
    const set = parseLimits({
      "per-subject": { descriptor: [{ key: "subject" }], requests: 600, per: "minute" },
      submit: { descriptor: [{ key: "subject" }, { key: "method", value: SUBMIT }], requests: 5, per: "second" },
    });
    expect(set.size).toBe(2);
    expect(set.limits[1]).toEqual({ name: "submit", entries: [{ key: "subject" }, { key: "method", value: SUBMIT }], requests: 5, per: "second", windowMs: 1000, scope: "global" });
  });

  it("reads where a limit is counted: global by default, or at the edge", () => {
    const set = parseLimits({
      shared: { descriptor: [{ key: "subject" }], requests: 600, per: "minute" },
      local: { descriptor: [{ key: "subject" }, { key: "method", value: SUBMIT }], requests: 5, per: "second", scope: "edge" },
      token: { descriptor: [{ key: "remote_address" }, { key: "method", value: ISSUE }], requests: 5, per: "minute", scope: "edge" },
    });
    expect(set.global.map((l) => l.name)).toEqual(["shared"]);
    expect(set.edge.map((l) => l.name)).toEqual(["local", "token"]);
    // The service counts only global limits: an edge limit's descriptor matches none here.
    expect(set.match([e("subject", "bob"), e("method", SUBMIT)])).toBeUndefined();
    expect(set.match([e("subject", "bob")])?.name).toBe("shared");
  });

  it("takes an empty object as no limits", () => {
    expect(parseLimits({}).size).toBe(0);
  });

  it.each([
    ["a list", [{ descriptor: [{ key: "subject" }], requests: 1, per: "minute" }], /must be a JSON object/],
    ["a string", "5/minute", /must be a JSON object/],
    ["null", null, /must be a JSON object/],
    ["a bad name", { "no spaces": { descriptor: [{ key: "a" }], requests: 1, per: "minute" } }, /limit name "no spaces"/],
    ["no descriptor", { a: { requests: 1, per: "minute" } }, /limit "a": descriptor:/],
    ["an empty descriptor", { a: { descriptor: [], requests: 1, per: "minute" } }, /limit "a": descriptor:/],
    ["an empty key", { a: { descriptor: [{ key: "" }], requests: 1, per: "minute" } }, /limit "a": descriptor\[0\]\.key:/],
    ["an empty value", { a: { descriptor: [{ key: "k", value: "" }], requests: 1, per: "minute" } }, /limit "a": descriptor\[0\]\.value:/],
    ["a repeated key", { a: { descriptor: [{ key: "k" }, { key: "k" }], requests: 1, per: "minute" } }, /only once/],
    ["zero requests", { a: { descriptor: [{ key: "k" }], requests: 0, per: "minute" } }, /limit "a": requests:/],
    ["fractional requests", { a: { descriptor: [{ key: "k" }], requests: 1.5, per: "minute" } }, /limit "a": requests:/],
    ["requests as text", { a: { descriptor: [{ key: "k" }], requests: "5", per: "minute" } }, /limit "a": requests:/],
    ["an unknown period", { a: { descriptor: [{ key: "k" }], requests: 1, per: "fortnight" } }, /limit "a": per:/],
    ["a misspelt field", { a: { descriptor: [{ key: "k" }], request: 1, per: "minute" } }, /limit "a"/],
    ["an unknown entry field", { a: { descriptor: [{ key: "k", val: "x" }], requests: 1, per: "minute" } }, /limit "a": descriptor\[0\]/],
    ["two limits on one descriptor", {
      a: { descriptor: [{ key: "k" }], requests: 1, per: "minute" },
      b: { descriptor: [{ key: "k" }], requests: 2, per: "hour" },
    }, /limits "a" and "b" have the same descriptor/],
    ["an unknown scope", { a: { descriptor: [{ key: "k" }], requests: 1, per: "minute", scope: "cluster" } }, /limit "a": scope:/],
    ["an edge limit on a key the edge does not know", {
      a: { descriptor: [{ key: "subject" }, { key: "tenant" }], requests: 1, per: "minute", scope: "edge" },
    }, /limit "a": descriptor\[1\]\.key: an edge limit counts only what the edge knows: subject, method, remote_address/],
    ["a global and an edge limit on one descriptor", {
      a: { descriptor: [{ key: "subject" }], requests: 1, per: "minute" },
      b: { descriptor: [{ key: "subject" }], requests: 2, per: "minute", scope: "edge" },
    }, /limits "a" and "b" have the same descriptor/],
  ])("refuses %s, saying why", (_, value, message) => {
    expect(() => parseLimits(value)).toThrow(message);
  });
});

describe("LimitSet.match", () => {
  const set = parseLimits({
    "per-subject": { descriptor: [{ key: "subject" }], requests: 100, per: "minute" },
    "subject-method": { descriptor: [{ key: "subject" }, { key: "method" }], requests: 50, per: "minute" },
    submit: { descriptor: [{ key: "subject" }, { key: "method", value: SUBMIT }], requests: 5, per: "minute" },
    "alice-any": { descriptor: [{ key: "subject", value: "alice" }, { key: "method" }], requests: 500, per: "minute" },
    issue: { descriptor: [{ key: "remote_address" }, { key: "method", value: ISSUE }], requests: 10, per: "minute" },
  });

  it("matches keys in order and the values a limit names; a limit without a value takes any", () => {
    expect(set.match([e("subject", "bob")])?.name).toBe("per-subject");
    expect(set.match([e("subject", "bob"), e("method", "/x.v1.S/M")])?.name).toBe("subject-method");
    expect(set.match([e("remote_address", "10.0.0.1"), e("method", ISSUE)])?.name).toBe("issue");
  });

  it("applies the most specific limit: the first entry that names a value wins", () => {
    expect(set.match([e("subject", "bob"), e("method", SUBMIT)])?.name).toBe("submit");
    expect(set.match([e("subject", "alice"), e("method", "/x.v1.S/M")])?.name).toBe("alice-any");
    // Both name a value; alice's names it at the first entry, as Envoy's descriptor tree would pick.
    expect(set.match([e("subject", "alice"), e("method", SUBMIT)])?.name).toBe("alice-any");
  });

  it("matches nothing for other keys, another order, more or fewer entries, or another value", () => {
    expect(set.match([e("method", SUBMIT), e("subject", "bob")])).toBeUndefined();
    expect(set.match([e("remote_address", "10.0.0.1")])).toBeUndefined();
    expect(set.match([e("remote_address", "10.0.0.1"), e("method", "/other")])).toBeUndefined();
    expect(set.match([e("subject", "bob"), e("method", SUBMIT), e("extra", "1")])).toBeUndefined();
  });
});

describe("parseFailureMode", () => {
  it("takes open or closed and refuses anything else", () => {
    expect(parseFailureMode("open")).toBe("open");
    expect(parseFailureMode("closed")).toBe("closed");
    for (const bad of ["OPEN", "deny", true, null, 1]) expect(() => parseFailureMode(bad)).toThrow(/must be "open" or "closed"/);
  });
});

describe("counterKey", () => {
  it("counts per limit and per value, keeps values that look like separators apart, and tags the domain", () => {
    const a = counterKey("taskmesh-edge", "submit", [e("subject", "a/b"), e("method", SUBMIT)]);
    const b = counterKey("taskmesh-edge", "submit", [e("subject", "a"), e("method", `b/${SUBMIT}`)]);
    expect(a).not.toBe(b);
    expect(a.startsWith("{taskmesh-edge}:submit:")).toBe(true);
    expect(counterKey("x}{", "n", [e("k", "v")]).startsWith("{x%7D%7B}:")).toBe(true);
  });
});

describe("rateLimitHandlers without Redis", () => {
  const limits = parseLimits({ submit: { descriptor: [{ key: "subject" }], requests: 1, per: "minute" } });
  const down: HitCounter = { hit: () => Promise.reject(new Error("connection refused")) };
  const ctx = { log: createLogger({ level: "silent" }) } as unknown as CallContext;
  const request = { domain: "taskmesh-edge", descriptors: [{ entries: [e("subject", "bob")], limit: undefined }, { entries: [e("other", "x")], limit: undefined }], hitsAddend: 0 };

  it("answers OK in failure mode open and OVER_LIMIT with a retry in failure mode closed; unlimited descriptors stay OK", async () => {
    const open = await rateLimitHandlers({ limits: () => limits, failureMode: () => "open", counter: down }).shouldRateLimit(request, ctx);
    expect(open.overallCode).toBe(RateLimitResponse_Code.OK);
    expect(open.responseHeadersToAdd).toEqual([]);
    const closed = await rateLimitHandlers({ limits: () => limits, failureMode: () => "closed", counter: down }).shouldRateLimit(request, ctx);
    expect(closed.overallCode).toBe(RateLimitResponse_Code.OVER_LIMIT);
    expect(closed.statuses.map((s) => s.code)).toEqual([RateLimitResponse_Code.OVER_LIMIT, RateLimitResponse_Code.OK]);
    expect(closed.responseHeadersToAdd.find((h) => h.key === "retry-after")?.value).toBe("1");
  });

  it("refuses a request without a domain or descriptors as INVALID_ARGUMENT", async () => {
    const handlers = rateLimitHandlers({ limits: () => limits, failureMode: () => "open", counter: down });
    await expect(handlers.shouldRateLimit({ domain: "", descriptors: [], hitsAddend: 0 }, ctx)).rejects.toMatchObject({ code: 3, reason: "VAL_INVALID_ARGUMENT" });
  });
});
