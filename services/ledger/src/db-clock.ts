import type pg from "pg";
import { query } from "@taskmesh/kit";
import { taskSql } from "./sql/tasks.js";

/** How the clock reads the database's time: one `SELECT now()`, answering it in ms since the epoch. */
export type ReadDbTime = () => Promise<number>;

/** Reads Postgres's `now()` over `pool`. */
export function dbTimeOf(pool: pg.Pool): ReadDbTime {
  return async () => (await query<{ now: Date }>(pool, taskSql.now)).rows[0]!.now.getTime();
}

/** Options of a {@link DbClock}. */
export interface DbClockOptions {
  /** How often the database is asked again, in ms. @default 1000 */
  readonly refreshMs?: number;
  /** How long the reading with the shortest round trip stays the reference, in ms. @default 60000 */
  readonly keepBestMs?: number;
  /** This process's clock, in ms since the epoch (tests give their own). @default Date.now */
  readonly localNow?: () => number;
}

/**
 * The database's time without a round trip per write: this process's clock
 * plus its offset from Postgres's `now()`, measured again every second in
 * the background (one `SELECT now()` a second, where every batch write
 * waited for one).
 *
 * The offset is taken as if the database had read its clock at the end of
 * the round trip, so the estimate is never ahead of the database (a task
 * due "now" is due for the next claim's `now()` too) and is behind by at
 * most that round trip's length; of the readings of the last minute, the
 * one with the shortest round trip is used. The times answered never go
 * backwards.
 */
export class DbClock {
  private readonly refreshMs: number;
  private readonly keepBestMs: number;
  private readonly localNow: () => number;
  private best: { offset: number; roundTrip: number; at: number } | undefined;
  private askedAt = Number.NEGATIVE_INFINITY;
  private asking: Promise<void> | undefined;
  private last = Number.NEGATIVE_INFINITY;

  constructor(private readonly read: ReadDbTime, options: DbClockOptions = {}) {
    this.refreshMs = options.refreshMs ?? 1000;
    this.keepBestMs = options.keepBestMs ?? 60_000;
    this.localNow = options.localNow ?? Date.now;
  }

  /**
   * The database's time now, as a Date (ms precision, as `pg` reads
   * timestamps). Only the first call waits for the database; later ones
   * answer at once and, once a second, ask it again in the background.
   */
  async now(signal?: AbortSignal): Promise<Date> {
    if (this.best === undefined) {
      await this.refresh();
      signal?.throwIfAborted();
    } else if (this.localNow() - this.askedAt >= this.refreshMs) {
      this.refresh().catch(() => undefined); // the next call asks again
    }
    this.last = Math.max(this.last, this.localNow() + this.best!.offset);
    return new Date(this.last);
  }

  /** One reading at a time, whoever asks. */
  private refresh(): Promise<void> {
    this.asking ??= this.ask().finally(() => (this.asking = undefined));
    return this.asking;
  }

  private async ask(): Promise<void> {
    const sent = this.localNow();
    const db = await this.read();
    const received = this.localNow();
    this.askedAt = received;
    const reading = { offset: db - received, roundTrip: received - sent, at: received };
    if (this.best === undefined || reading.roundTrip <= this.best.roundTrip || received - this.best.at > this.keepBestMs) this.best = reading;
  }
}
