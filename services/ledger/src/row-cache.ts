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
 * nothing and the completion take the locking way. Bounded by rows (`max`)
 * and by the size of their inputs (`maxBytes`), the oldest dropped first; a
 * row with an input over `maxRowBytes` is not kept. A row leaves once its
 * completion is written.
 */
export class RowCache {
  private readonly rows = new Map<string, CachedRow & { bytes: number }>();
  private bytes = 0;

  constructor(private readonly limits: { max: number; maxBytes: number; maxRowBytes: number } = { max: 10_000, maxBytes: 64 * 1024 * 1024, maxRowBytes: 64 * 1024 }) {}

  /** Remembers `row` as written in row version `xmin` (unless its input is too large to keep). */
  remember(row: TaskRow, xmin: string): void {
    this.forget(row.id);
    const bytes = JSON.stringify(row.input).length + JSON.stringify(row.labels).length + 1024;
    if (bytes > this.limits.maxRowBytes) return;
    this.rows.set(row.id, { row, xmin, bytes });
    this.bytes += bytes;
    while (this.rows.size > this.limits.max || this.bytes > this.limits.maxBytes) this.forget(this.rows.keys().next().value!);
  }

  /** The row as this process last wrote it, if remembered. */
  get(taskId: string): CachedRow | undefined {
    const entry = this.rows.get(taskId);
    return entry && { row: entry.row, xmin: entry.xmin };
  }

  forget(taskId: string): void {
    const entry = this.rows.get(taskId);
    if (!entry) return;
    this.rows.delete(taskId);
    this.bytes -= entry.bytes;
  }

  get size(): number {
    return this.rows.size;
  }
}
