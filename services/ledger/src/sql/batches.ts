import type pg from "pg";
import { historySql } from "./history.js";
import { outboxSql } from "./outbox.js";
import { taskSql } from "./tasks.js";

/** `text` with its parameters $1… moved up by `by`, to run it beside others in one statement. */
function shifted(text: string, by: number): string {
  return text.replace(/\$(\d+)/g, (_, n: string) => `$${Number(n) + by}`);
}

/**
 * The batch writes of a transition joined into one statement each (data-
 * modifying CTEs: every part runs once, to completion, in the statement's
 * snapshot), so a batch costs one round trip instead of two or three. The
 * parameters are those of the parts, in order.
 */
export const batchSql = {
  /** {@link historySql.insertMany} ($1–$14) and {@link outboxSql.insertMany} ($15–$21). */
  historyAndEvents: {
    name: "ledger-batch-history-and-events",
    text: `WITH history AS (${historySql.insertMany.text})
           ${shifted(outboxSql.insertMany.text, 14)}`,
  },
  /**
   * {@link taskSql.saveMany} ($1–$16), {@link historySql.insertMany}
   * ($17–$30) and {@link outboxSql.insertMany} ($31–$37); answers how many
   * task rows it wrote.
   */
  tasksHistoryAndEvents: {
    name: "ledger-batch-tasks-history-and-events",
    text: `WITH saved AS (${taskSql.saveMany.text} RETURNING 1),
           history AS (${shifted(historySql.insertMany.text, 16)}),
           events AS (${shifted(outboxSql.insertMany.text, 30)})
           SELECT count(*)::int AS saved FROM saved`,
  },
} satisfies Record<string, pg.QueryConfig>;
