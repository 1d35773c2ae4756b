import { ConfigServiceService, EventType, type WatchResponse } from "@taskmesh/contracts/gen/taskmesh/config/v1/config";
import type { Logger } from "pino";
import type { MeshClient } from "./client.js";

/** The config service's client type, as {@link createClient} makes it. */
export type ConfigClient = MeshClient<typeof ConfigServiceService>;

/** Options of {@link watchSetting}. */
export interface WatchSettingOptions<T> {
  /** The config key to follow, e.g. `/coordinator/dispatch/strategy`. */
  readonly key: string;
  /** Turns the stored JSON value into a setting; throw to reject a value (the previous one stays). */
  readonly parse: (value: unknown) => T;
  /** The setting while the key is absent, deleted or invalid. */
  readonly fallback: T;
  /** Called with each new setting (not for the first one). */
  readonly onChange?: (value: T, previous: T) => void;
  readonly logger: Logger;
  /** Longest wait between reconnects, in ms. @default 5000 */
  readonly maxBackoffMs?: number;
}

/** A live setting: always has a value, and follows the config key until closed. */
export interface LiveSetting<T> {
  /** The current value. */
  get(): T;
  /** Resolves once the first answer from the config service arrived (the value may be the fallback). */
  readonly ready: Promise<void>;
  /** Stops following the key. */
  close(): void;
}

/**
 * Follows one config key live: reads it, then applies every change as it
 * commits, from any replica. A lost stream is resumed from the last revision
 * seen, with backoff, so no change is missed; while the config service is
 * unreachable the last known value stays in force.
 */
export function watchSetting<T>(client: ConfigClient, options: WatchSettingOptions<T>): LiveSetting<T> {
  const stop = new AbortController();
  let value = options.fallback;
  let afterRevision: bigint | undefined;
  let markReady!: () => void;
  const ready = new Promise<void>((r) => (markReady = r));

  const apply = (raw: unknown, present: boolean): void => {
    let next = options.fallback;
    if (present) {
      try {
        next = options.parse(raw);
      } catch (error) {
        options.logger.warn({ key: options.key, err: error }, "invalid config value ignored; keeping the previous one");
        return;
      }
    }
    const previous = value;
    value = next;
    if (!Object.is(previous, next)) options.onChange?.(next, previous);
  };

  const handle = (message: WatchResponse): void => {
    for (const event of message.events) {
      if (event.entry?.key !== options.key) continue;
      apply(event.entry.value, event.type === EventType.EVENT_TYPE_PUT);
    }
    afterRevision = message.revision;
    if (message.snapshotComplete) markReady();
  };

  void (async () => {
    for (let failures = 0; !stop.signal.aborted; failures++) {
      try {
        const stream = client.watch(
          afterRevision === undefined ? { prefix: options.key } : { prefix: options.key, afterRevision },
          { signal: stop.signal },
        );
        for await (const message of stream) {
          handle(message);
          failures = 0;
        }
      } catch (error) {
        if (stop.signal.aborted) return;
        options.logger.debug({ key: options.key, err: error }, "config watch lost; resuming");
      }
      const delay = Math.min(options.maxBackoffMs ?? 5000, 100 * 2 ** failures) * (0.5 + Math.random() / 2);
      await new Promise((r) => setTimeout(r, delay).unref());
    }
  })();

  return {
    get: () => value,
    ready,
    close: () => stop.abort(),
  };
}
