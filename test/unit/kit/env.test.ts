import { describe, expect, it } from "vitest";
import { z } from "zod";
import { EnvError, envSchemas, kitEnvShape, loadEnv, parseDuration, upstreamAddress } from "@taskmesh/kit";

describe("loadEnv", () => {
  const shape = { ...kitEnvShape, DATABASE_URL: envSchemas.url("postgres", "postgresql"), WORKERS: envSchemas.positiveInt().default(4) };

  it("fills defaults and returns a frozen, typed object", () => {
    const env = loadEnv(shape, { DATABASE_URL: "postgres://u:p@127.0.0.1:5432/db" });
    expect(env).toEqual({
      TASKMESH_LISTEN: "127.0.0.1:0", TASKMESH_SHUTDOWN_GRACE: 10_000, LOG_LEVEL: "info", DATABASE_URL: "postgres://u:p@127.0.0.1:5432/db", WORKERS: 4,
    });
    expect(Object.isFrozen(env)).toBe(true);
  });

  it("reads readable durations into milliseconds", () => {
    expect(loadEnv(shape, { DATABASE_URL: "postgres://h/db", TASKMESH_SHUTDOWN_GRACE: "2m" }).TASKMESH_SHUTDOWN_GRACE).toBe(120_000);
    expect([parseDuration("250ms"), parseDuration("10s"), parseDuration("1.5s"), parseDuration("1h"), parseDuration("7d"), parseDuration("300")]).toEqual([250, 10_000, 1500, 3_600_000, 604_800_000, 300]);
    expect(parseDuration("ten seconds")).toBeUndefined();
  });

  it("names every bad variable in one error", () => {
    const bad = () => loadEnv(shape, { TASKMESH_LISTEN: "localhost", TASKMESH_SHUTDOWN_GRACE: "soon", LOG_LEVEL: "loud", WORKERS: "-1" });
    expect(bad).toThrow(EnvError);
    try {
      bad();
    } catch (error) {
      const e = error as EnvError;
      expect(e.issues.map((i) => i.variable).sort()).toEqual(["DATABASE_URL", "LOG_LEVEL", "TASKMESH_LISTEN", "TASKMESH_SHUTDOWN_GRACE", "WORKERS"]);
      expect(e.issues.find((i) => i.variable === "DATABASE_URL")!.problem).toBe("required");
      expect(e.message).toMatch(/TASKMESH_SHUTDOWN_GRACE: expected a duration like 500ms/);
      expect(e.message).toMatch(/TASKMESH_LISTEN: expected host:port/);
    }
  });

  it("treats an empty variable as unset and rejects URLs of another scheme and ports out of range", () => {
    expect(loadEnv({ X: z.string().default("d") }, { X: "  " }).X).toBe("d");
    expect(() => loadEnv(shape, { DATABASE_URL: "mysql://h/db" })).toThrow(/DATABASE_URL: expected a postgres or postgresql URL/);
    expect(() => loadEnv(shape, { DATABASE_URL: "postgres://h/db", TASKMESH_LISTEN: "127.0.0.1:70000" })).toThrow(/TASKMESH_LISTEN: port out of range/);
  });
});

describe("upstreamAddress", () => {
  it("prefers the per-service override to the sidecar", () => {
    const env = { TASKMESH_UPSTREAM: "127.0.0.1:15001", TASKMESH_UPSTREAM_LEDGER: "127.0.0.1:7002" };
    expect(upstreamAddress("ledger", env)).toBe("127.0.0.1:7002");
    expect(upstreamAddress("config", env)).toBe("127.0.0.1:15001");
  });

  it("names the variable to set when neither is there, and the bad one when malformed", () => {
    expect(() => upstreamAddress("config", {})).toThrow(/TASKMESH_UPSTREAM: required to reach config \(or set TASKMESH_UPSTREAM_CONFIG\)/);
    expect(() => upstreamAddress("config", { TASKMESH_UPSTREAM_CONFIG: "nope" })).toThrow(/TASKMESH_UPSTREAM_CONFIG: expected host:port/);
  });

  it("turns a list of replicas into one balanced ipv4 target, IPv4 literals only", () => {
    expect(upstreamAddress("coordinator", { TASKMESH_UPSTREAM_COORDINATOR: "127.0.0.1:7001, 127.0.0.1:7002" })).toBe("ipv4:127.0.0.1:7001,127.0.0.1:7002");
    expect(() => upstreamAddress("coordinator", { TASKMESH_UPSTREAM_COORDINATOR: "localhost:1,localhost:2" })).toThrow(/must be IPv4 host:port pairs/);
    expect(() => upstreamAddress("coordinator", { TASKMESH_UPSTREAM_COORDINATOR: "127.0.0.1:1,nope" })).toThrow(/expected host:port/);
  });
});
