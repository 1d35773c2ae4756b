import { describe, expect, it } from "vitest";
import { createLogger } from "@taskmesh/kit";
import { OffsetCommitter, PartitionTracker, type TopicPartitionOffset } from "../../../services/events/src/index.js";

const log = createLogger({ level: "silent" });

/** A committer over one partition whose commits fail `failures` times first; `calls` records each attempt. */
function committer(failures: number) {
  const tracker = new PartitionTracker();
  const calls: TopicPartitionOffset[][] = [];
  const c = new OffsetCommitter({
    topic: "t", trackers: new Map([[0, tracker]]), log, intervalMs: 5,
    commit: async (offsets) => {
      calls.push(offsets);
      if (calls.length <= failures) throw new Error("REBALANCE_IN_PROGRESS");
    },
  });
  return { c, tracker, calls };
}

const until = async (done: () => boolean): Promise<void> => {
  const deadline = Date.now() + 5000;
  while (!done()) {
    if (Date.now() > deadline) throw new Error("not done in 5 s");
    await new Promise((r) => setTimeout(r, 5));
  }
};

describe("events: the offset committer", () => {
  it("tries a failed commit again on its own until it lands, with no settlement to prompt it", async () => {
    const { c, tracker, calls } = committer(2);
    tracker.startFrom(7n);
    c.schedule();
    await until(() => tracker.committed === 7n);
    expect(calls).toEqual([1, 2, 3].map(() => [{ topic: "t", partition: 0, offset: "7" }]));
    // Nothing changed since: no further commit.
    await new Promise((r) => setTimeout(r, 50));
    expect(calls).toHaveLength(3);
  });

  it("commitNow rejects when the commit fails, and the next try commits what is settled by then", async () => {
    const { c, tracker, calls } = committer(1);
    tracker.take(3n);
    tracker.take(4n);
    await expect(c.commitNow()).rejects.toThrow("REBALANCE_IN_PROGRESS");
    tracker.settle(3n);
    await until(() => tracker.committed === 4n);
    expect(calls.map((o) => o[0]!.offset)).toEqual(["3", "4"]);
    await c.flush();
  });
});
