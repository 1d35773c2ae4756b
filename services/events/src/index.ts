export { AckRelay, subscriptionGone } from "./ack-relay.js";
export { buildEvents, type EventsDeps, type EventsService } from "./build.js";
export { GroupAttempts, RedisAttempts, attemptKey, type AttemptStore } from "./attempts.js";
export { JSON_CONTENT_TYPE, PARTITION_KEY, fromRecord, headersText, partitionKeyOf, toRecord } from "./cloud-event.js";
export { DLQ_HEADERS, DeadLetterIndex, REDRIVEN_HEADER, writeDeadLetter, type DeadLetterFilter, type Failure } from "./dead-letters.js";
export type { NackSpec, SettleResult } from "./deliveries.js";
export { Subscriptions, eventHandlers, type EventHandlerDeps } from "./handlers.js";
export { KafkaClients, createKafka, kafkaUnavailable } from "./kafka.js";
export { startDeliverySpan, type DeliveryFacts } from "./delivery-span.js";
export { OffsetCommitter, type OffsetCommitterOptions, type TopicPartitionOffset } from "./offset-committer.js";
export { PartitionTracker } from "./partition-tracker.js";
export { PublishDedup, type Claim, type Landed, type PublishDedupOptions } from "./publish-dedup.js";
export { Publisher, type PublisherDeps } from "./publisher.js";
export {
  BUILT_IN_ROUTES, DLQ_TOPIC, IDENTITY_TOPIC, REGISTRY_KEY, TASKS_TOPIC, isEventType, isTopicName, isTypePattern, matchesAny, parseRoutes, routeOf, typeMatches,
} from "./registry.js";
export { resolveStartOffsets, uncommittedEnds } from "./start-offsets.js";
export { Subscription, privateGroup, type SubscriptionOptions, type SubscriptionState } from "./subscription.js";
export { MAX_DATA_BYTES, MAX_EXTENSIONS, SUBSCRIBE_LIMITS, checkEvent, checkSubscribe, contentHash, type StartPosition, type SubscriptionSpec } from "./validation.js";
