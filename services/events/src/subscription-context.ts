import type { Tracer } from "@opentelemetry/api";
import type { Consumer } from "kafkajs";
import type { SubscribeResponse } from "@taskmesh/contracts/gen/taskmesh/events/v1/events";
import type { Logger } from "@taskmesh/kit";
import type { GroupAttempts } from "./attempts.js";
import type { KafkaClients } from "./kafka.js";
import type { OffsetCommitter } from "./offset-committer.js";
import type { PartitionTracker } from "./partition-tracker.js";
import type { SubscriptionSpec } from "./validation.js";

/**
 * What the parts of a subscription (its partition feed and its deliveries)
 * share: its identity and settings, and a view of its state.
 */
export interface SubscriptionContext {
  readonly id: string;
  readonly group: string;
  readonly spec: SubscriptionSpec;
  readonly kafka: KafkaClients;
  readonly log: Logger;
  readonly tracer: Tracer;
  /** Failed-delivery counts of the group. */
  readonly attempts: GroupAttempts;
  /** The partitions this member holds now, each with its tracker. */
  readonly trackers: Map<number, PartitionTracker>;
  /** Whether the subscription is running (started, not closing). */
  running(): boolean;
  /** The group's consumer, once started. */
  consumer(): Consumer | undefined;
  /** Commits the group's settled offsets, once started; none for a private group. */
  committer(): OffsetCommitter | undefined;
  /** Sends one message on the Subscribe stream, after those sent before it. */
  enqueue(message: SubscribeResponse): Promise<void>;
}
