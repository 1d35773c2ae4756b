import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { upForSuite } from "../support/up.js";

// The run's Postgres as an operator meets it under `taskmesh up`: a psql
// console, a backup taken while the system serves, and a restore into the
// stopped system that the next `up` starts from.
describe("taskmesh db: console, backup and restore under up", { timeout: 120_000 }, () => {
  const upRun = upForSuite();

  /** The input `n` of every task, in creation order, as `db console` prints it. */
  const tasksInConsole = async (): Promise<string[]> => {
    const out = await upRun().taskmesh("db", "console", "--", "-At", "-c", "SELECT input->>'n' FROM ledger.tasks ORDER BY created_at");
    expect(out.code, out.stderr).toBe(0);
    return out.stdout.trim().split("\n").filter(Boolean);
  };

  it("db console runs psql on the run's database; a backup taken while it serves comes back, after a restore, as it was", async () => {
    const before = await upRun().taskmesh("task", "submit", "echo", '{"n":"before"}', "--wait");
    expect(before.code, before.stderr).toBe(0);
    const backup = await upRun().taskmesh("db", "backup");
    expect(backup.code, backup.stderr).toBe(0);
    const file = backup.stdout.trim();
    expect(file).toMatch(/\/backups\/taskmesh-\d{8}T\d{6}Z\.tar\.gz$/);
    expect(existsSync(file)).toBe(true);
    const after = await upRun().taskmesh("task", "submit", "echo", '{"n":"after"}', "--wait");
    expect(after.code, after.stderr).toBe(0);
    const afterId = after.stdout.split("\n")[0]!.trim();
    expect(afterId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    expect(await tasksInConsole()).toEqual(["before", "after"]);

    // A restore needs the system stopped.
    const refused = await upRun().taskmesh("db", "restore", file);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain("taskmesh is running");

    expect((await upRun().taskmesh("down")).code).toBe(0);
    const restored = await upRun().taskmesh("db", "restore", file);
    expect(restored.code, restored.stderr).toBe(0);
    const again = await upRun().upAgain();
    expect(again.code, again.stderr + again.stdout).toBe(0);

    // The data as it was when the backup was taken: the later task is gone, and new work runs.
    expect(await tasksInConsole()).toEqual(["before"]);
    const gone = await upRun().taskmesh("task", "get", afterId);
    expect(gone.code).not.toBe(0);
    expect(gone.stderr).toContain("RES_TASK_NOT_FOUND");
    const third = await upRun().taskmesh("task", "submit", "echo", '{"n":"third"}', "--wait");
    expect(third.code, third.stderr).toBe(0);
    expect(await tasksInConsole()).toEqual(["before", "third"]);
  });

  it("db restore of a file that is missing, or is not a backup, says why and exits non-zero, changing nothing", async () => {
    const missing = await upRun().taskmesh("db", "restore", "/nonexistent/backup.tar.gz");
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("no such backup");
    const junk = join(upRun().stateDir, "junk.tar.gz");
    writeFileSync(junk, "not a backup\n");
    expect((await upRun().taskmesh("down")).code).toBe(0);
    const refused = await upRun().taskmesh("db", "restore", junk);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain("is not a backup");
    const again = await upRun().upAgain();
    expect(again.code, again.stderr + again.stdout).toBe(0);
    expect(await tasksInConsole()).toEqual(["before", "third"]);
  });
});
