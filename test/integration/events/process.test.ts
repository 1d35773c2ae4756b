import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { Kafka, logLevel } from "kafkajs";
import { describe, expect, inject, it } from "vitest";
import { EventServiceService, type Event } from "@taskmesh/contracts/gen/taskmesh/events/v1/events";
import { freePort } from "@taskmesh/local/secrets";
import { eventsTail } from "../../../packages/cli/src/commands/events.js";
import { Code, createClient } from "@taskmesh/kit";
import { testTopicPrefix } from "../../support/kafka.js";
import { startConfigReplica } from "../../support/config-server.js";
import { createTestDatabase } from "../../support/postgres.js";
import { startService, waitForServing } from "../../support/processes.js";
import { Subscriber, waitFor } from "./support.js";
import { createTopicsReady } from "@taskmesh/local/provision/kafka";

const event = (id: string, type: string): Event => ({
  id, source: "//test/process", specversion: "", type, subject: id, time: undefined, datacontenttype: "", dataschema: "", data: { id }, extensions: {},
});

describe("the events process", () => {
  it("exits 2 naming the variable when its environment is bad", async () => {
    const proc = startService("events", { KAFKA_BROKERS: "nope", REDIS_URL: inject("redisUrl"), TASKMESH_LISTEN: "127.0.0.1:0" });
    expect(await proc.exited).toBe(2);
    expect(proc.output()).toMatch(/events: bad environment: KAFKA_BROKERS:/);
  });

  it("serves with the live type registry, tails through the CLI, and on SIGTERM ends streams with SYS_SHUTTING_DOWN and exits 0", async () => {
    const prefix = testTopicPrefix("events-process");
    const kafka = new Kafka({ clientId: prefix, brokers: [inject("kafkaBrokers")], logLevel: logLevel.NOTHING });
    const admin = kafka.admin();
    await admin.connect();
    const topic = `${prefix}.orders`;
    await createTopicsReady(admin, [{ topic, numPartitions: 2 }]);
    const db = await createTestDatabase("events_process");
    const config = await startConfigReplica(db.url);
    const address = `127.0.0.1:${await freePort()}`;
    const metrics = `127.0.0.1:${await freePort()}`;
    const proc = startService("events", {
      KAFKA_BROKERS: inject("kafkaBrokers"), REDIS_URL: inject("redisUrl"), TASKMESH_LISTEN: address, TASKMESH_UPSTREAM_CONFIG: config.address,
      TASKMESH_METRICS_LISTEN: metrics,
    });
    const client = createClient(EventServiceService, address);
    try {
      await waitForServing(address, proc, 60_000);
      // A type is unknown until the registry routes it; the change applies without a restart.
      await expect(client.publish({ event: event(`${prefix}-0`, "shop.order.created") })).rejects.toMatchObject({ code: Code.INVALID_ARGUMENT, reason: "VAL_UNKNOWN_EVENT_TYPE" });
      await config.client.put({ key: "/events/types", value: { "shop.order.*": topic }, expectedRevision: undefined });
      await waitFor("the registry change", async () => (await client.publish({ event: event(`${prefix}-1`, "shop.order.created") }).catch(() => undefined))?.topic === topic, 10_000);
      const task = await client.publish({ event: event(`${prefix}-2`, "taskmesh.task.v1.note") });
      expect(task.topic).toBe("taskmesh.tasks");
      // As a user publishes with grpcurl (proto3 JSON, through reflection).
      const body = JSON.stringify({ event: { id: `${prefix}-3`, source: "//cli", type: "shop.order.created", data: { n: 3 } } });
      const { stdout } = await promisify(execFile)("grpcurl", ["-plaintext", "-d", body, address, "taskmesh.events.v1.EventService/Publish"], { timeout: 10_000 });
      expect(JSON.parse(stdout)).toMatchObject({ topic, event: { id: `${prefix}-3`, specversion: "1.0", datacontenttype: "application/json", data: { n: 3 } } });

      const lines: string[] = [];
      const stopTail = new AbortController();
      const tail = eventsTail({ topic, from: "earliest", type: ["shop.order.*"], address }, { out: (l) => lines.push(l), err: () => undefined }, stopTail.signal);
      await waitFor("the tailed events", () => lines.length === 2);
      expect(lines.find((l) => l.includes(` ${prefix}-1 `))).toMatch(new RegExp(`^\\d{4}-\\S+ ${topic.replace(/\./g, "\\.")}/\\d@0 shop\\.order\\.created ${prefix}-1 ${prefix}-1 \\{"id":"${prefix}-1"\\}$`));
      stopTail.abort();
      expect(await tail).toBe(130);

      const sub = new Subscriber(client, { topic, consumerGroup: `${prefix}.g` });
      await sub.joined();
      // The named group's lag, per partition of its topic, on /metrics.
      const lag = await (await fetch(`http://${metrics}/metrics`)).text();
      const lagLines = lag.split("\n").filter((l) => l.startsWith(`kafka_consumer_lag{group="${prefix}.g",topic="${topic}"`));
      expect(lagLines, lag.slice(0, 2000)).toHaveLength(2);
      for (const line of lagLines) expect(Number(line.split(" ").at(-1))).toBeGreaterThanOrEqual(0);
      proc.child.kill("SIGTERM");
      await sub.done;
      expect(sub.error).toMatchObject({ code: Code.UNAVAILABLE, reason: "SYS_SHUTTING_DOWN" });
      expect(await proc.exited).toBe(0);
    } finally {
      client.close();
      if (proc.child.exitCode === null) proc.child.kill("SIGKILL");
      await config.stop();
      await db.drop();
      await admin.disconnect();
    }
  }, 90_000);
});
