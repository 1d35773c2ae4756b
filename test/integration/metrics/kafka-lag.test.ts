import { Kafka, logLevel } from "kafkajs";
import { Registry } from "prom-client";
import { describe, expect, inject, it } from "vitest";
import { kafkaConsumerLag } from "@taskmesh/kit/metrics";
import { testTopicPrefix } from "../../support/kafka.js";
import { sampleOf } from "./prometheus-text.js";

describe("kafka_consumer_lag against the broker", () => {
  it("is each partition's high watermark minus the group's committed offset", async () => {
    const prefix = testTopicPrefix("metrics-lag");
    const topic = `${prefix}.events`;
    const groupId = `${prefix}.group`;
    const kafka = new Kafka({ clientId: prefix, brokers: [inject("kafkaBrokers")], logLevel: logLevel.NOTHING });
    const admin = kafka.admin();
    const producer = kafka.producer({ allowAutoTopicCreation: false });
    try {
      await admin.connect();
      await producer.connect();
      await admin.createTopics({ topics: [{ topic, numPartitions: 2 }], waitForLeaders: true });
      await producer.send({ topic, messages: Array.from({ length: 5 }, (_, i) => ({ partition: 0, value: `m${i}` })) });
      await producer.send({ topic, messages: Array.from({ length: 3 }, (_, i) => ({ partition: 1, value: `n${i}` })) });
      await admin.setOffsets({ groupId, topic, partitions: [{ partition: 0, offset: "2" }, { partition: 1, offset: "3" }] });
      const registry = new Registry();
      kafkaConsumerLag({ admin, groups: [{ groupId, topics: [topic] }], registry });
      const text = await registry.metrics();
      expect(sampleOf(text, "kafka_consumer_lag", { group: groupId, topic, partition: "0" })).toBe(3);
      expect(sampleOf(text, "kafka_consumer_lag", { group: groupId, topic, partition: "1" })).toBe(0);
    } finally {
      await producer.disconnect();
      await admin.deleteTopics({ topics: [topic] }).catch(() => undefined);
      await admin.disconnect();
    }
  });
});
