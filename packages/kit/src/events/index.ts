export { MemoryDedupStore, RedisDedupStore, type ClaimOutcome, type DedupStore } from "./dedup-store.js";
export {
  EventBusyError, EventConsumer, consumedEvent,
  type ConsumedEvent, type ConsumerLike, type EventConsumerOptions, type EventConsumerState, type EventHandler,
} from "./event-consumer.js";
