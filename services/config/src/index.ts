export { buildConfig, type ConfigDeps, type ConfigService } from "./build.js";
export { configHandlers, toEntry } from "./handlers.js";
export { MAX_KEY_BYTES, MAX_VALUE_BYTES, MAX_VALUE_DEPTH, parseKey, parsePrefix, valueViolation } from "./keys.js";
export { LiveQueue, type LiveBatch } from "./live-queue.js";
export { migrations } from "./sql/migrations.js";
export { ConfigStore, keyNotFound, type DeleteResult, type PutResult } from "./store.js";
export { WatchHub, type ChangeListener, type WatchHubOptions, type WatchHubState } from "./watch-hub.js";
