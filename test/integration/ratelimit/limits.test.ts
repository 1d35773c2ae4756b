import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { RateLimitResponse_RateLimit_Unit } from "@taskmesh/contracts/gen/envoy/service/ratelimit/v3/rls";
import { Code } from "@taskmesh/kit";
import { OK, OVER_LIMIT, SUBMIT, eventually, ms, refusalOf, startRatelimit, type RatelimitStack } from "./support.js";

const run = promisify(execFile);
const LIMITS = "/ratelimit/limits";

describe("ratelimit: limits from config, counted in Redis", () => {
  let stack: RatelimitStack;

  beforeAll(async () => {
    stack = await startRatelimit("ratelimit_limits", inject("redisUrl"));
    await stack.put(LIMITS, {
      "per-subject": { descriptor: [{ key: "subject" }], requests: 3, per: "minute" },
      submit: { descriptor: [{ key: "subject" }, { key: "method", value: SUBMIT }], requests: 1, per: "minute" },
      burst: { descriptor: [{ key: "subject", value: "burst" }], requests: 2, per: "second" },
    });
    // The limits apply once the service has seen the write.
    await eventually(async () => expect((await stack.ask("probe")).statuses[0]?.currentLimit?.name).toBe("per-subject"));
  });

  afterAll(async () => {
    await stack?.stop();
  });

  it("admits N requests per minute and refuses the N+1th with when to retry, as RetryInfo for gRPC callers", async () => {
    const answers = [];
    for (let i = 0; i < 4; i++) answers.push(await stack.ask("alice"));
    expect(answers.map((a) => a.overallCode)).toEqual([OK, OK, OK, OVER_LIMIT]);
    expect(answers.map((a) => a.statuses[0]!.limitRemaining)).toEqual([2, 1, 0, 0]);
    const over = answers[3]!;
    const status = over.statuses[0]!;
    expect(status.code).toBe(OVER_LIMIT);
    expect(status.currentLimit).toEqual({ name: "per-subject", requestsPerUnit: 3, unit: RateLimitResponse_RateLimit_Unit.MINUTE });
    const resetMs = ms(status.durationUntilReset);
    expect(resetMs).toBeGreaterThan(50_000);
    expect(resetMs).toBeLessThanOrEqual(60_000);

    const { error, retryAfter, status: rpc } = refusalOf(over);
    expect(rpc.code).toBe(Code.RESOURCE_EXHAUSTED);
    expect(error.reason).toBe("RATE_LIMITED");
    expect(error.metadata).toMatchObject({ name: "per-subject", descriptor: "subject=alice", limit: "3/minute" });
    expect(error.retryAfterMs).toBeGreaterThan(50_000);
    expect(error.retryAfterMs).toBeLessThanOrEqual(60_000);
    expect(Number(retryAfter)).toBe(Math.ceil(error.retryAfterMs! / 1000));
    // An admitted answer adds no headers.
    expect(answers[0]!.responseHeadersToAdd).toEqual([]);
  });

  it("gives every subject its own budget", async () => {
    expect((await stack.ask("alice")).overallCode).toBe(OVER_LIMIT);
    const bob = await stack.ask("bob");
    expect(bob.overallCode).toBe(OK);
    expect(bob.statuses[0]!.limitRemaining).toBe(2);
  });

  it("admits exactly N of many concurrent requests", async () => {
    const answers = await Promise.all(Array.from({ length: 20 }, () => stack.ask("crowd")));
    expect(answers.filter((a) => a.overallCode === OK)).toHaveLength(3);
    expect(answers.filter((a) => a.overallCode === OK).map((a) => a.statuses[0]!.limitRemaining).sort()).toEqual([0, 1, 2]);
  });

  it("checks every descriptor of a request at once and counts a refused request nowhere", async () => {
    const first = await stack.ask("carol", { method: SUBMIT });
    expect(first.overallCode).toBe(OK);
    expect(first.statuses.map((s) => [s.currentLimit?.name, s.limitRemaining])).toEqual([["per-subject", 2], ["submit", 0]]);
    const second = await stack.ask("carol", { method: SUBMIT });
    expect(second.overallCode).toBe(OVER_LIMIT);
    expect(second.statuses.map((s) => s.code)).toEqual([OK, OVER_LIMIT]);
    expect(refusalOf(second).error.metadata.descriptor).toBe(`subject=carol,method=${SUBMIT}`);
    // The refused submit did not use carol's per-subject budget.
    const other = await stack.ask("carol", { method: "/taskmesh.coordinator.v1.TaskService/GetTask" });
    expect(other.overallCode).toBe(OK);
    expect(other.statuses[0]!.limitRemaining).toBe(1);
    // A descriptor no limit matches is OK without a limit.
    expect(other.statuses[1]).toMatchObject({ code: OK, currentLimit: undefined });
  });

  it("adds hits_addend hits, and refuses a request whose hits do not fit", async () => {
    expect((await stack.ask("dave", { hits: 2 })).statuses[0]!.limitRemaining).toBe(1);
    expect((await stack.ask("dave", { hits: 2 })).overallCode).toBe(OVER_LIMIT);
    const last = await stack.ask("dave", { hits: 1 });
    expect(last.overallCode).toBe(OK);
    expect(last.statuses[0]!.limitRemaining).toBe(0);
  });

  it("slides the window: a budget comes back when the oldest hit leaves it, not at a fixed boundary", async () => {
    expect((await stack.ask("burst")).overallCode).toBe(OK);
    await new Promise((r) => setTimeout(r, 400));
    expect((await stack.ask("burst")).overallCode).toBe(OK);
    const over = await stack.ask("burst");
    expect(over.overallCode).toBe(OVER_LIMIT);
    const resetMs = ms(over.statuses[0]!.durationUntilReset);
    expect(resetMs).toBeGreaterThan(0);
    expect(resetMs).toBeLessThanOrEqual(600);
    await new Promise((r) => setTimeout(r, resetMs + 20));
    // One hit left the window (the first), the second is still in it.
    const again = await stack.ask("burst");
    expect(again.overallCode).toBe(OK);
    expect(again.statuses[0]!.limitRemaining).toBe(0);
    expect((await stack.ask("burst")).overallCode).toBe(OVER_LIMIT);
  });

  it("applies a changed limit without a restart, and keeps the last good set when a malformed one is written", async () => {
    expect((await stack.ask("alice")).overallCode).toBe(OVER_LIMIT);
    await stack.put(LIMITS, {
      "per-subject": { descriptor: [{ key: "subject" }], requests: 5, per: "minute" },
      submit: { descriptor: [{ key: "subject" }, { key: "method", value: SUBMIT }], requests: 1, per: "minute" },
    });
    const raised = await eventually(async () => {
      const answer = await stack.ask("alice");
      expect(answer.overallCode).toBe(OK);
      return answer;
    });
    expect(raised.statuses[0]!.currentLimit?.requestsPerUnit).toBe(5);
    expect(raised.statuses[0]!.limitRemaining).toBe(1);

    await stack.put(LIMITS, { "per-subject": { descriptor: [{ key: "subject" }], requests: "lots", per: "minute" } });
    await eventually(() => expect(stack.proc.output()).toMatch(/limit \\"per-subject\\": requests:/));
    const kept = await stack.ask("alice");
    expect(kept.overallCode).toBe(OK);
    expect(kept.statuses[0]!.currentLimit?.requestsPerUnit).toBe(5);
    expect(kept.statuses[0]!.limitRemaining).toBe(0);
    expect((await stack.ask("alice")).overallCode).toBe(OVER_LIMIT);
  });

  it("serves health under its service name and reflection for grpcurl", async () => {
    const grpcurl = (...args: string[]) => run("grpcurl", ["-plaintext", ...args], { timeout: 10_000 });
    const list = await grpcurl(stack.address, "list");
    expect(list.stdout.split("\n")).toEqual(expect.arrayContaining([
      "envoy.service.ratelimit.v3.RateLimitService", "envoy.service.runtime.v3.RuntimeDiscoveryService", "envoy.service.extension.v3.ExtensionConfigDiscoveryService", "grpc.health.v1.Health",
    ]));
    const described = await grpcurl(stack.address, "describe", "envoy.service.ratelimit.v3.RateLimitResponse.DescriptorStatus");
    expect(described.stdout).toContain("duration_until_reset");
    const health = await grpcurl("-d", '{"service":"envoy.service.ratelimit.v3.RateLimitService"}', stack.address, "grpc.health.v1.Health/Check");
    expect(health.stdout).toContain("SERVING");
  });
});
