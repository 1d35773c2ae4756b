import { describe, expect, it } from "vitest";
import { DbClock } from "../../../services/ledger/src/db-clock.js";

/** A database whose clock runs `skew` ms ahead of the local one, answering after `delays` ms (read at the start of each delay's second half). */
function fakeDb(local: { now: number }, skew: number, delays: number[]) {
  let calls = 0;
  const read = async (): Promise<number> => {
    calls++;
    const delay = delays.shift() ?? 1;
    local.now += delay / 2;
    const at = local.now + skew;
    local.now += delay / 2;
    return at;
  };
  return { read, calls: () => calls };
}

describe("DbClock", () => {
  it("answers the database's time without asking it for every write, never ahead of it, and asks again once a period in the background", async () => {
    const local = { now: 1_000_000 };
    const db = fakeDb(local, 5_000, [8, 2, 2]);
    const clock = new DbClock(db.read, { refreshMs: 1000, localNow: () => local.now });
    const first = (await clock.now()).getTime();
    // Read halfway through an 8 ms round trip: the estimate is at most that round trip behind, never ahead.
    expect(first).toBeLessThanOrEqual(local.now + 5_000);
    expect(first).toBeGreaterThanOrEqual(local.now + 5_000 - 8);
    for (let i = 0; i < 100; i++) {
      local.now += 3;
      expect((await clock.now()).getTime()).toBeLessThanOrEqual(local.now + 5_000);
    }
    // 100 writes over 300 ms: one reading.
    expect(db.calls()).toBe(1);
    local.now += 1_000;
    await clock.now(); // due: asks in the background and answers at once
    await new Promise((r) => setImmediate(r));
    expect(db.calls()).toBe(2);
    // The 2 ms round trip is the better reading: the estimate is now within 2 ms.
    const later = (await clock.now()).getTime();
    expect(later).toBeGreaterThanOrEqual(local.now + 5_000 - 2);
    expect(later).toBeLessThanOrEqual(local.now + 5_000);
  });

  it("never goes backwards, even when a later reading puts the database behind", async () => {
    const local = { now: 0 };
    let skew = 100;
    const clock = new DbClock(async () => {
      local.now += 1;
      return local.now + skew;
    }, { refreshMs: 10, keepBestMs: 0, localNow: () => local.now });
    const before = (await clock.now()).getTime();
    skew = 50; // the database's clock stepped back
    local.now += 20;
    await clock.now();
    await new Promise((r) => setImmediate(r));
    expect((await clock.now()).getTime()).toBeGreaterThanOrEqual(before);
  });

  it("fails the first call when the database cannot be read, and reads again on the next", async () => {
    let fail = true;
    const clock = new DbClock(async () => {
      if (fail) throw new Error("connection refused");
      return 42_000;
    }, { localNow: () => 41_000 });
    await expect(clock.now()).rejects.toThrow("connection refused");
    fail = false;
    expect((await clock.now()).getTime()).toBe(42_000);
  });
});
