import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "@taskmesh/local/secrets";
import { createTestDatabase, type TestDatabase } from "../../support/postgres.js";
import { startService, waitForServing, type ServiceProcess } from "../../support/processes.js";

const run = promisify(execFile);

/** grpcurl against the config service, as a user would run it (found on PATH; `npm test` builds it). */
async function grpcurl(...args: string[]): Promise<{ stdout: string; stderr: string; code: number }> {
  try {
    const { stdout, stderr } = await run("grpcurl", ["-plaintext", ...args], { timeout: 10_000 });
    return { stdout, stderr, code: 0 };
  } catch (error) {
    const e = error as { stdout?: string; stderr?: string; code?: number };
    return { stdout: e.stdout ?? "", stderr: e.stderr ?? "", code: e.code ?? -1 };
  }
}

describe("the config service through grpcurl", () => {
  let db: TestDatabase;
  let proc: ServiceProcess;
  let address: string;

  beforeAll(async () => {
    db = await createTestDatabase("config_grpcurl");
    address = `127.0.0.1:${await freePort()}`;
    proc = startService("config", { DATABASE_URL: db.url, TASKMESH_LISTEN: address });
    await waitForServing(address, proc);
  });

  afterAll(async () => {
    proc?.child.kill("SIGTERM");
    await proc?.exited;
    await db?.drop();
  });

  it("lists and describes the service through reflection, imported types included", async () => {
    const list = await grpcurl(address, "list");
    expect(list.stdout.split("\n")).toEqual(expect.arrayContaining(["taskmesh.config.v1.ConfigService", "grpc.health.v1.Health"]));
    const describe = await grpcurl(address, "describe", "taskmesh.config.v1.ConfigService");
    expect(describe.stdout).toContain("rpc Watch ( .taskmesh.config.v1.WatchRequest ) returns ( stream .taskmesh.config.v1.WatchResponse )");
    const entry = await grpcurl(address, "describe", "taskmesh.config.v1.Entry");
    expect(entry.stdout).toContain(".google.protobuf.Value value = 2;");
    const value = await grpcurl(address, "describe", "google.protobuf.Value");
    expect(value.code).toBe(0);
  });

  it("puts, gets and watches a key", async () => {
    const watch = run("grpcurl", ["-plaintext", "-max-time", "3", "-d", '{"prefix":"/coordinator"}', address, "taskmesh.config.v1.ConfigService/Watch"])
      .catch((error: { stdout?: string }) => ({ stdout: error.stdout ?? "" }));
    await new Promise((r) => setTimeout(r, 500));
    const put = await grpcurl("-d", '{"key":"/coordinator/dispatch/strategy","value":"least_loaded"}', address, "taskmesh.config.v1.ConfigService/Put");
    expect(put.code).toBe(0);
    expect(JSON.parse(put.stdout)).toMatchObject({ entry: { key: "/coordinator/dispatch/strategy", value: "least_loaded", version: "1" } });
    const get = await grpcurl("-d", '{"key":"coordinator/dispatch/strategy"}', address, "taskmesh.config.v1.ConfigService/Get");
    expect(JSON.parse(get.stdout)).toMatchObject({ entry: { value: "least_loaded" } });
    const { stdout } = await watch;
    expect(stdout).toContain('"snapshotComplete": true');
    expect(stdout).toContain('"value": "least_loaded"');
  });

  it("shows the error details of a bad key", async () => {
    const bad = await grpcurl("-d", '{"key":"/bad key//"}', address, "taskmesh.config.v1.ConfigService/Get");
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain("Code: InvalidArgument");
    expect(bad.stderr).toContain('"reason": "VAL_INVALID_KEY"');
    expect(bad.stderr).toContain('"domain": "taskmesh.dev"');
    expect(bad.stderr).toContain('"@type": "type.googleapis.com/google.rpc.BadRequest"');
    expect(bad.stderr).toContain('"field": "key"');
  });
});
