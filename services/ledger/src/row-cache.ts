import type { TaskRow } from "./sql/tasks.js";

/** A task row as this process wrote it, and the row version it was written as (`xmin`). */
export interface CachedRow {
  readonly row: TaskRow;
  readonly xmin: string;
}

/**
 * The leased task rows this process wrote last (a sync-matched insert, an
 * assignment), each with its row version (`xmin`), so that the task's
 * completion can be written in one statement without reading the row again:
 * the statement writes only where the row is still that version
 * (`t.xmin = $version`), and any other write since (a start, progress, a
 * renewal, a cancel, an expired lease, in any process) makes it write
 * nothing and the completion take the locking way. At most `max` rows, the
 * oldest dropped first; a row leaves once its completion is written.
 */
export class RowCache {
  private readonly rows = new Map<string, CachedRow>();

  constructor(private readonly max = 10_000) {}

  /** Remembers `row` as written in row version `xmin`. */
  remember(row: TaskRow, xmin: string): void {
    this.rows.delete(row.id);
    this.rows.set(row.id, { row, xmin });
    if (this.rows.size > this.max) this.rows.delete(this.rows.keys().next().value!);
  }

  /** The row as this process last wrote it, if remembered. */
  get(taskId: string): CachedRow | undefined {
    return this.rows.get(taskId);
  }

  forget(taskId: string): void {
    this.rows.delete(taskId);
  }

  get size(): number {
    return this.rows.size;
  }
}
