import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { splitDescriptorSet } from "@taskmesh/kit";

const root = join(import.meta.dirname, "../../..");

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? files(path) : [path];
  });
}

describe("contracts", () => {
  const scratch = mkdtempSync(join(tmpdir(), "taskmesh-gen-"));
  afterAll(() => rmSync(scratch, { recursive: true, force: true }));

  it("pass buf lint (STANDARD)", () => {
    expect(() => execFileSync(join(root, "node_modules/.bin/buf"), ["lint", "proto"], { cwd: root, stdio: "pipe" })).not.toThrow();
  });

  it("match the committed packages/contracts/gen/ (run `npm run generate` and commit when this fails)", () => {
    execFileSync("bash", [join(root, "scripts/generate.sh"), scratch], { cwd: root, stdio: "pipe" });
    const fresh = join(scratch, "packages/contracts/gen");
    const committed = join(root, "packages/contracts/gen");
    const names = (dir: string) => files(dir).map((f) => relative(dir, f)).sort();
    expect(names(committed)).toEqual(names(fresh));
    for (const name of names(fresh)) {
      expect(readFileSync(join(committed, name)).equals(readFileSync(join(fresh, name))), `packages/contracts/gen/${name} is stale`).toBe(true);
    }
  });

  it("ship a descriptor set with every taskmesh service, health and the error detail types", () => {
    const set = readFileSync(join(root, "packages/contracts/gen/descriptor.binpb"));
    const text = splitDescriptorSet(set).map((f) => f.toString("latin1")).join("\n");
    for (const name of [
      "taskmesh/config/v1/config.proto", "taskmesh/coordinator/v1/task_service.proto", "taskmesh/coordinator/v1/worker_service.proto",
      "taskmesh/ledger/v1/ledger.proto", "taskmesh/identity/v1/identity.proto", "taskmesh/events/v1/events.proto",
      "taskmesh/task/v1/task.proto", "taskmesh/worker/v1/worker.proto", "health/v1/health.proto", "google/rpc/error_details.proto",
    ]) {
      expect(text, name).toContain(name);
    }
  });
});
