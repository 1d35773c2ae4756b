import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, createLogger } from "@taskmesh/kit";
import { Retention } from "@taskmesh/ledger-service";
import { connectWorker, createRequest, failure, seconds, startLedger, type LedgerHarness } from "./support.js";

describe("ledger: retention of finished tasks", () => {
  let h: LedgerHarness;

  beforeAll(async () => {
    h = await startLedger("ledger_retention");
    await connectWorker(h.client, "w-keep", ["echo"]);
  });
  afterAll(async () => { await h?.stop(); });

  const historyRows = async (id: string) => Number((await h.sql.query<{ n: string }>("SELECT count(*) AS n FROM ledger.history WHERE task_id = $1", [id])).rows[0]!.n);

  /** Creates a task and claims it. */
  async function claimed(overrides: Parameters<typeof createRequest>[0] = {}) {
    const { task } = await h.client.createTask(createRequest(overrides));
    const { tasks } = await h.client.claimTasks({ workerId: "w-keep", capabilities: [{ capability: "echo", maxTasks: 1 }], maxTasks: 1, leaseDuration: seconds(30) });
    expect(tasks.map((t) => t.id)).toEqual([task!.id]);
    return { id: task!.id, leaseId: tasks[0]!.lease!.leaseId };
  }

  it("removes tasks finished longer ago than the retention, with their history; keeps the rest; frees the idempotency key", async () => {
    const succeeded = await claimed({ idempotencyKey: "nightly-report" });
    await h.client.completeTask({ taskId: succeeded.id, leaseId: succeeded.leaseId, output: { text: "done" }, expectedSequence: undefined });
    const running = await claimed();
    await h.client.startTask({ taskId: running.id, leaseId: running.leaseId, expectedSequence: undefined, leaseDuration: undefined });
    const cancelled = (await h.client.createTask(createRequest())).task!.id;
    await h.client.cancelTask({ taskId: cancelled, reason: "not needed", expectedSequence: undefined, actor: "alice" });
    // Of a capability no worker here takes, so the claims below leave it PENDING.
    const pending = (await h.client.createTask(createRequest({ capability: "report" }))).task!.id;
    expect(await historyRows(succeeded.id)).toBe(3);

    await sleep(600);
    const recent = await claimed();
    await h.client.completeTask({ taskId: recent.id, leaseId: recent.leaseId, output: { text: "done" }, expectedSequence: undefined });

    const retention = new Retention(h.sql, { retentionMs: 400, logger: createLogger({ level: "silent" }) });
    // A task goes only once the outbox relay has published all its transitions (its history rows are its events): move
    // the relay's cursor as the relay does, first to the succeeded task's last transition, then past everything.
    const publishedUpTo = (where: string, values: unknown[]) => h.sql.query(
      `UPDATE ledger.relay_cursor c SET txid = h.txid, task_id = h.task_id, sequence = h.sequence
       FROM (SELECT txid, task_id, sequence FROM ledger.history ${where} ORDER BY txid DESC, task_id DESC, sequence DESC LIMIT 1) h WHERE c.relay = 'tasks'`, values);
    await publishedUpTo("WHERE task_id = $1", [succeeded.id]);
    expect(await retention.pass()).toEqual({ tasks: 1, transitions: 3 });
    expect(await historyRows(cancelled)).toBe(2);
    await publishedUpTo("", []);
    expect(await retention.pass()).toEqual({ tasks: 1, transitions: 2 });
    for (const id of [succeeded.id, cancelled]) {
      expect(await failure(h.client.getTask({ id, view: 0 }))).toMatchObject({ code: Code.NOT_FOUND, reason: "RES_TASK_NOT_FOUND" });
      expect(await historyRows(id)).toBe(0);
    }
    for (const id of [running.id, pending, recent.id]) expect((await h.client.getTask({ id, view: 0 })).task?.id).toBe(id);
    expect(await historyRows(recent.id)).toBe(3);
    // Nothing more is due: a second pass removes nothing.
    expect(await retention.pass()).toEqual({ tasks: 0, transitions: 0 });

    // The key of a removed task takes a new task.
    const again = await h.client.createTask(createRequest({ idempotencyKey: "nightly-report" }));
    expect(again.created).toBe(true);
    expect(again.task!.id).not.toBe(succeeded.id);
  });

  it("keeps history append-only while its task exists", async () => {
    const { task } = await h.client.createTask(createRequest());
    await expect(h.sql.query("DELETE FROM ledger.history WHERE task_id = $1", [task!.id])).rejects.toThrow(/append-only while its task exists/);
    await expect(h.sql.query("UPDATE ledger.history SET reason = 'x' WHERE task_id = $1", [task!.id])).rejects.toThrow(/append-only/);
    expect(await historyRows(task!.id)).toBe(1);
  });

  it("with retention 0 keeps every task (start() schedules nothing)", async () => {
    const retention = new Retention(h.sql, { retentionMs: 0, intervalMs: 100, logger: createLogger({ level: "silent" }) });
    retention.start();
    const before = Number((await h.sql.query<{ n: string }>("SELECT count(*) AS n FROM ledger.tasks")).rows[0]!.n);
    await sleep(300);
    await retention.stop();
    expect(Number((await h.sql.query<{ n: string }>("SELECT count(*) AS n FROM ledger.tasks")).rows[0]!.n)).toBe(before);
  });
});
