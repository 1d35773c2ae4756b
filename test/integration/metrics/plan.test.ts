import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { buildPlan } from "@taskmesh/local/plan";

describe("the local plan's metrics ports", () => {
  it("gives every service instance a metrics port of its own, passed as TASKMESH_METRICS_LISTEN and listed as ports.metrics", async () => {
    const stateDir = mkdtempSync(join(tmpdir(), "taskmesh-plan-"));
    try {
      const plan = await buildPlan({ stateDir, postgresPassword: "x", databaseUrl: "postgres://u:p@127.0.0.1:1/taskmesh", replicas: { worker: 3 } });
      const services = plan.specs.filter((s) => s.kind === "service");
      expect(services.filter((s) => s.service === "worker")).toHaveLength(3);
      for (const s of services) {
        expect(s.ports.metrics, s.name).toBeGreaterThan(0);
        expect(s.env?.TASKMESH_METRICS_LISTEN, s.name).toBe(`127.0.0.1:${s.ports.metrics}`);
      }
      const all = plan.specs.flatMap((s) => Object.values(s.ports));
      expect(new Set(all).size).toBe(all.length);
      expect(plan.specs.filter((s) => s.kind !== "service").every((s) => s.ports.metrics === undefined)).toBe(true);
    } finally {
      rmSync(stateDir, { recursive: true, force: true });
    }
  });
});
