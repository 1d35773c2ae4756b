import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { Kafka, logLevel } from "kafkajs";
import pg from "pg";
import { describe, expect, inject, it } from "vitest";
import { TaskEvent } from "@taskmesh/contracts/gen/taskmesh/task/v1/task";
import { freePort } from "@taskmesh/local/secrets";
import { uuidv7 } from "@taskmesh/ledger-service";
import { testTopicPrefix } from "../../support/kafka.js";
import { createTestDatabase } from "../../support/postgres.js";
import { startService, waitForServing } from "../../support/processes.js";
import { hashOf, mirrorOutbox, unpublishedEvents } from "./support.js";

const run = promisify(execFile);

async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe("the ledger process with the outbox relay", () => {
  it("exits 2 naming the variable when KAFKA_BROKERS is bad", async () => {
    const proc = startService("ledger", { DATABASE_URL: "postgres://u@127.0.0.1:1/db", TASKMESH_LISTEN: "127.0.0.1:0", KAFKA_BROKERS: "localhost:9092,nope" });
    expect(await proc.exited).toBe(2);
    expect(proc.output()).toMatch(/KAFKA_BROKERS/);
  });

  it("publishes a created task's event to TASKMESH_OUTBOX_TOPIC and releases everything on SIGTERM", async () => {
    const prefix = testTopicPrefix("relay-process");
    const topic = `${prefix}.tasks`;
    const brokers = inject("kafkaBrokers");
    const db = await createTestDatabase("ledger_relay_process");
    const sql = new pg.Pool({ connectionString: db.url, max: 1 });
    const kafka = new Kafka({ clientId: prefix, brokers: [brokers], logLevel: logLevel.NOTHING });
    const admin = kafka.admin();
    const consumer = kafka.consumer({ groupId: topic, heartbeatInterval: 200, maxWaitTimeInMs: 100, allowAutoTopicCreation: false });
    const received: Array<{ key: string; ceId: string; value: Buffer }> = [];
    const address = `127.0.0.1:${await freePort()}`;
    let proc: ReturnType<typeof startService> | undefined;
    try {
      await admin.connect();
      await admin.createTopics({ topics: [{ topic, numPartitions: 12 }], waitForLeaders: true });
      await consumer.connect();
      await consumer.subscribe({ topic, fromBeginning: true });
      await consumer.run({ eachMessage: async ({ message }) => void received.push({ key: message.key!.toString(), ceId: String(message.headers!.ce_id), value: message.value! }) });
      proc = startService("ledger", { DATABASE_URL: db.url, TASKMESH_LISTEN: address, KAFKA_BROKERS: ` ${brokers} , `, TASKMESH_OUTBOX_TOPIC: topic, LOG_LEVEL: "info" });
      await waitForServing(address, proc);
      await mirrorOutbox(sql); // the relay deletes what it published: keep a copy of every row written
      const id = uuidv7();
      const body = JSON.stringify({ id, capability: "echo", input: { text: "hi" }, requestHash: hashOf("p1"), maxAttempts: 3, timeout: "60s", createdBy: "alice" });
      await run("grpcurl", ["-plaintext", "-d", body, address, "taskmesh.ledger.v1.LedgerService/CreateTask"], { timeout: 10_000 });
      await waitFor("the event on the topic", () => received.length >= 1);
      expect(received).toHaveLength(1);
      expect(received[0]!.key).toBe(id);
      // The task's one transition (SUBMITTED): its history row is its event.
      const { rows } = await sql.query<{ event_id: string }>("SELECT event_id FROM ledger.history WHERE task_id = $1", [id]);
      expect(rows).toHaveLength(1);
      expect(received[0]!.ceId).toBe(rows[0]!.event_id);
      expect(TaskEvent.decode(received[0]!.value)).toMatchObject({ subject: id, task: { capability: "echo", input: { text: "hi" }, createdBy: "alice" } });
      await waitFor("the relay to pass it", async () => (await unpublishedEvents(sql)) === 0);
    } finally {
      proc?.child.kill("SIGTERM");
      const exited = await proc?.exited;
      await sql.end();
      await consumer.disconnect().catch(() => undefined);
      await admin.disconnect().catch(() => undefined);
      if (proc) expect(exited, proc.output()).toBe(0);
    }
    expect(proc.output()).toMatch(/outbox relay is active/);
    await waitFor("connections to close", async () => (await db.openConnections()) === 0, 5000);
    await db.drop();
  });
});
