import type { Logger } from "@taskmesh/kit";
import type { LedgerClient } from "./dispatcher.js";

/** The capabilities the built-in agents provide. */
export const BUILTIN_CAPABILITIES: readonly string[] = ["echo", "sleep", "hash", "fail", "flaky"];

/** How far back a worker's declared capabilities count. */
const SEEN_WINDOW_MS = 24 * 3600_000;

/**
 * Which capabilities a submit may name: the built-in ones, the ones listed
 * in config key `/coordinator/capabilities`, and the ones declared by a
 * worker seen in the last 24 hours (read from the ledger every
 * `refreshMs`, and at once when a submit names one not seen yet).
 */
export class KnownCapabilities {
  private fromWorkers = new Set<string>();
  private refreshedAt = 0;
  private refreshing: Promise<void> | undefined;

  constructor(
    private readonly ledger: LedgerClient,
    private readonly configured: () => readonly string[],
    private readonly connected: () => Iterable<string>,
    private readonly log: Logger,
    private readonly refreshMs = 30_000,
  ) {}

  /** True when `capability` is known now. */
  has(capability: string): boolean {
    if (BUILTIN_CAPABILITIES.includes(capability) || this.configured().includes(capability) || this.fromWorkers.has(capability)) return true;
    for (const c of this.connected()) if (c === capability) return true;
    return false;
  }

  /** Like {@link has}, re-reading the workers first when it is unknown and the last read is older than a second. */
  async check(capability: string, signal?: AbortSignal): Promise<boolean> {
    if (this.has(capability)) return true;
    if (Date.now() - this.refreshedAt < 1000) return false;
    await this.refresh(signal);
    return this.has(capability);
  }

  /** Re-reads the capabilities of recently seen workers when the last read is older than `refreshMs`. */
  async refreshIfStale(): Promise<void> {
    if (Date.now() - this.refreshedAt >= this.refreshMs) await this.refresh().catch((error: unknown) => this.log.debug({ err: error }, "capabilities refresh failed"));
  }

  private refresh(signal?: AbortSignal): Promise<void> {
    this.refreshing ??= (async () => {
      try {
        const found = new Set<string>();
        let pageToken = "";
        do {
          const page = await this.ledger.listWorkers({ states: [], capability: "", seenAfter: new Date(Date.now() - SEEN_WINDOW_MS), pageSize: 1000, pageToken }, signal ? { signal } : {});
          for (const w of page.workers) for (const c of w.info?.capabilities ?? []) found.add(c.name);
          pageToken = page.nextPageToken;
        } while (pageToken !== "");
        this.fromWorkers = found;
        this.refreshedAt = Date.now();
      } finally {
        this.refreshing = undefined;
      }
    })();
    return this.refreshing;
  }
}
