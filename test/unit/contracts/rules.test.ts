import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { isCapabilityName, isReason, TOPICS } from "@taskmesh/contracts";
import { ROOT } from "@taskmesh/local/provision/versions";
import { KAFKA_TOPICS } from "@taskmesh/local/provision/kafka";
import { isCapabilityName as coordinatorCapability } from "../../../services/coordinator/src/validation.js";
import { defineAgent, AgentError } from "@taskmesh/worker/service";
import { MeshError, Code } from "@taskmesh/kit/errors";

describe("the shared rules (packages/contracts)", () => {
  it("a capability's name: 1..63 of a-z 0-9 . _ -, starting with a letter, the same for the coordinator and the worker SDK", () => {
    for (const good of ["echo", "py-reverse", "word.stats_2", `a${"b".repeat(62)}`]) {
      expect(isCapabilityName(good), good).toBe(true);
      expect(coordinatorCapability(good), good).toBe(true);
      expect(defineAgent({ capability: good, handler: () => ({}) }).capability).toBe(good);
    }
    for (const bad of ["", "2fast", "Echo", "has space", `a${"b".repeat(63)}`, "-x"]) {
      expect(isCapabilityName(bad), bad).toBe(false);
      expect(coordinatorCapability(bad), bad).toBe(false);
      expect(() => defineAgent({ capability: bad, handler: () => ({}) }), bad).toThrow(TypeError);
    }
  });

  it("an error reason: a class prefix and UPPER_SNAKE words, the same for MeshError and a handler's AgentError", () => {
    for (const good of ["VAL_INVALID_INPUT", "BIZ_HANDLER_FAILED", "EXT_HTTP_503", "SYS_X"]) {
      expect(isReason(good), good).toBe(true);
      expect(new MeshError({ code: Code.INTERNAL, reason: good as never, message: "m" }).reason).toBe(good);
      expect(new AgentError("m", { reason: good }).reason).toBe(good);
    }
    for (const bad of ["VAL_", "VAL__DOUBLE", "VAL_TRAILING_", "val_lower", "NOPE_THING", "VALX"]) {
      expect(isReason(bad), bad).toBe(false);
      expect(() => new MeshError({ code: Code.INTERNAL, reason: bad as never, message: "m" }), bad).toThrow(TypeError);
      expect(new AgentError("m", { reason: bad }).reason, bad).toBe("BIZ_HANDLER_FAILED");
    }
  });

  it("the topics the local broker, compose and Kubernetes create are the contracts' topics", () => {
    const topics = Object.values(TOPICS).sort();
    expect(Object.keys(KAFKA_TOPICS).sort()).toEqual(topics);
    const compose = readFileSync(join(ROOT, "deploy/compose/compose.yaml"), "utf8");
    expect([...compose.matchAll(/--topic (\S+)/g)].map((m) => m[1]).sort()).toEqual(topics);
    const k8s = readFileSync(join(ROOT, "deploy/k8s/base/kafka.yaml"), "utf8");
    expect([...k8s.matchAll(/kind: KafkaTopic\n(?:.*\n)*?\s+name: (\S+)/g)].map((m) => m[1]).sort()).toEqual(topics);
  });
});
