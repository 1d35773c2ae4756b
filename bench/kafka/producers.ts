/**
 * The relays' Kafka producer, kafkajs against @platformatic/kafka: the CPU
 * each spends per message of the outbox relay's shape (a 610-byte value, a
 * task id key, the nine CloudEvents and trace headers), sent as the relay
 * sends (batches of BATCH, one send in flight, idempotent, acks from all
 * in-sync replicas) to one real broker started for the run, ROUNDS rounds
 * alternating the two clients.
 *
 *   npm run bench:kafka            (N=150000 BATCH=420 ROUNDS=2)
 */
import { mkdtempSync, chmodSync } from "node:fs";
import { tmpdir, cpus, loadavg } from "node:os";
import { join } from "node:path";
import { randomUUID } from "node:crypto";
import { Producer, compatibilityPartitioner, stringSerializers } from "@platformatic/kafka";
import { Kafka, Partitioners, logLevel } from "kafkajs";
import { ensureKafka, kafkaSpec } from "@taskmesh/local/provision/kafka";
import { freePort } from "@taskmesh/local/secrets";
import { Supervisor } from "@taskmesh/local/supervisor";

const N = Number(process.env.N ?? 150_000), BATCH = Number(process.env.BATCH ?? 420), ROUNDS = Number(process.env.ROUNDS ?? 2);
await ensureKafka();
const dir = mkdtempSync(join(tmpdir(), "taskmesh-bench-kafka-")); chmodSync(dir, 0o755);
const supervisor = new Supervisor({ logDir: join(dir, "logs"), restart: false });
const port = await freePort();
await supervisor.start([kafkaSpec({ dataDir: join(dir, "kafka"), logDir: join(dir, "logs"), port, controllerPort: await freePort() })]);
const broker = `127.0.0.1:${port}`;
const kafka = new Kafka({ clientId: "bench", brokers: [broker], logLevel: logLevel.NOTHING });
const admin = kafka.admin(); await admin.connect();
await admin.createTopics({ waitForLeaders: true, topics: [{ topic: "t1", numPartitions: 12, replicationFactor: 1 }, { topic: "t2", numPartitions: 12, replicationFactor: 1 }] });
await admin.disconnect();

const value = Buffer.alloc(610, 7);
const messages = (n: number) => Array.from({ length: n }, () => {
  const id = randomUUID(), task = randomUUID();
  return { key: task, value, headers: { ce_specversion: "1.0", ce_id: id, ce_type: "taskmesh.task.v1.succeeded", ce_source: "//taskmesh.dev/ledger", ce_subject: task,
    ce_time: new Date().toISOString(), "content-type": "application/protobuf", taskmesh_sequence: "3", traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" } };
});
const batches = Array.from({ length: Math.ceil(N / BATCH) }, () => messages(BATCH));

async function measure(label: string, send: (b: ReturnType<typeof messages>) => Promise<unknown>) {
  for (const b of batches.slice(0, 20)) await send(b); // warm-up
  const c0 = process.cpuUsage(), t0 = performance.now();
  for (const b of batches) await send(b);
  const c = process.cpuUsage(c0), ms = performance.now() - t0;
  const cpuUs = c.user + c.system;
  console.log(`${label}: ${(N / ms * 1000).toFixed(0)} msgs/s, CPU ${(cpuUs / N).toFixed(1)} µs/msg (user ${(c.user / N).toFixed(1)}, sys ${(c.system / N).toFixed(1)})`);
}

console.log(`machine: nproc ${cpus().length}, ${cpus()[0]!.model}, Node ${process.version}; load ${loadavg()[0]!.toFixed(2)}; ${N} msgs in batches of ${BATCH}`);
const kp = kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false, createPartitioner: Partitioners.DefaultPartitioner });
await kp.connect();
const pp = new Producer({ clientId: "bench-platformatic", bootstrapBrokers: [broker], idempotent: true, acks: -1, partitioner: compatibilityPartitioner, autocreateTopics: false,
  serializers: { ...stringSerializers, value: (v?: Buffer) => v } });
for (let r = 0; r < ROUNDS; r++) {
  await measure("kafkajs 2.2.4", (b) => kp.send({ topic: "t1", acks: -1, messages: b }));
  await measure("@platformatic/kafka 2.12.1", (b) => pp.send({ messages: b.map((m) => ({ topic: "t2", key: m.key, value: m.value, headers: m.headers })) }));
}
// Both topics hold every message sent (the warm-up included), so neither client dropped any.
const check = kafka.admin(); await check.connect();
for (const topic of ["t1", "t2"]) {
  const stored = (await check.fetchTopicOffsets(topic)).reduce((sum, p) => sum + Number(p.high), 0);
  const sent = ROUNDS * (batches.length + Math.min(20, batches.length)) * BATCH;
  if (stored !== sent) throw new Error(`${topic}: ${stored} messages stored, ${sent} sent`);
}
await check.disconnect();
console.log(`load ${loadavg()[0]!.toFixed(2)}`);
await kp.disconnect(); await pp.close();
await supervisor.stop();
process.exit(0);
