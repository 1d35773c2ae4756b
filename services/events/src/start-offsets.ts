import { invalidArgument } from "@taskmesh/kit";
import type { KafkaClients } from "./kafka.js";
import type { StartPosition } from "./validation.js";

/**
 * The first offset to deliver per partition for a start position, taken
 * when the subscription starts: `latest` = each partition's end now,
 * `earliest` = its oldest retained offset, a timestamp = the first offset at
 * or after it (the end when there is none), offsets = as given. Empty for
 * `committed` (the group's offsets apply). INVALID_ARGUMENT
 * (VAL_INVALID_START) for offsets of partitions the topic does not have.
 */
export async function resolveStartOffsets(kafka: KafkaClients, topic: string, start: StartPosition, partitions: readonly number[]): Promise<Map<number, bigint>> {
  const offsets = new Map<number, bigint>();
  if (start.kind === "committed") return offsets;
  if (start.kind === "offsets") {
    const unknown = [...start.offsets.keys()].filter((p) => !partitions.includes(p));
    if (unknown.length > 0) {
      throw invalidArgument(unknown.map((p) => ({
        field: `offset.partitions[${p}]`, description: `topic ${topic} has partitions 0..${partitions.length - 1}`, reason: "VAL_INVALID_START",
      })), "VAL_INVALID_START");
    }
    for (const [p, o] of start.offsets) offsets.set(p, o);
    return offsets;
  }
  const ends = await kafka.withAdmin((admin) => admin.fetchTopicOffsets(topic));
  const byTime = start.kind === "timestamp" ? await kafka.withAdmin((admin) => admin.fetchTopicOffsetsByTimestamp(topic, start.at.getTime())) : [];
  for (const e of ends) {
    let offset = start.kind === "earliest" ? e.low : e.high;
    if (start.kind === "timestamp") {
      const found = byTime.find((b) => b.partition === e.partition)?.offset;
      offset = found === undefined || found === "-1" ? e.high : found;
    }
    offsets.set(e.partition, BigInt(offset));
  }
  return offsets;
}

/**
 * The partitions among `partitions` that `group` has no committed offset
 * for, each with the topic's end now: where they start, so that the
 * position can be committed before anything is delivered.
 */
export async function uncommittedEnds(kafka: KafkaClients, group: string, topic: string, partitions: readonly number[]): Promise<Map<number, bigint>> {
  const [committed] = await kafka.withAdmin((admin) => admin.fetchOffsets({ groupId: group, topics: [topic] }));
  const ends = await kafka.withAdmin((admin) => admin.fetchTopicOffsets(topic));
  const found = new Map<number, bigint>();
  for (const partition of partitions) {
    const offset = committed?.partitions.find((p) => p.partition === partition)?.offset;
    if (offset !== undefined && offset !== "-1") continue;
    found.set(partition, BigInt(ends.find((e) => e.partition === partition)?.high ?? "0"));
  }
  return found;
}
