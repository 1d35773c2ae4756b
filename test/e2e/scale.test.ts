import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { edgeApi, startUp, until, type UpRun } from "../support/up.js";

interface Worker {
  info: { workerId: string };
  state: string;
}

// Replicas that join and leave a running system: `taskmesh scale` under
// `taskmesh up`, a coordinator reached through the edge once it joins, tasks
// running on a new worker, and none lost when workers leave.
describe("taskmesh scale under up", { timeout: 180_000 }, () => {
  let upRun: UpRun;
  let token: string;
  const api = (path: string, body?: unknown) => edgeApi(upRun.edge, token, path, body);
  const workers = async (): Promise<Worker[]> => ((await (await api("/v1/workers")).json()) as { workers: Worker[] }).workers;
  const processes = async (): Promise<Array<{ name: string; state: string }>> => (JSON.parse((await upRun.taskmesh("status", "--json")).stdout) as { processes: Array<{ name: string; state: string }> }).processes;
  const submitSleeps = async (n: number, ms: number): Promise<string[]> => Promise.all(Array.from({ length: n }, async () => {
    const response = await api("/v1/tasks", { capability: "sleep", input: { ms } });
    return ((await response.json()) as { task: { id: string } }).task.id;
  }));
  const task = async (id: string) => ((await (await api(`/v1/tasks/${id}`)).json()) as { task: { state: string; workerId: string } }).task;

  beforeAll(async () => {
    upRun = await startUp();
    token = await upRun.token();
  }, 400_000); // waiting for the lock included

  afterAll(async () => {
    await upRun?.down();
  }, 60_000);

  it("refuses what it cannot do: a service there is not, no replicas, not <service>=<n>", async () => {
    const unknown = await upRun.taskmesh("scale", "nosuch=2");
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain("no service nosuch");
    for (const bad of ["worker=0", "worker=17", "worker"]) expect((await upRun.taskmesh("scale", bad)).code, bad).toBe(2);
  });

  it("coordinator=2: a coordinator others call joins, and the edge reaches it with no config written again and no Envoy restarted; coordinator=1: it leaves; no call fails meanwhile", async () => {
    const edgeAdmin = `http://127.0.0.1:${upRun.env.TASKMESH_EDGE_ADMIN_PORT}`;
    const statusJson = async () => (JSON.parse((await upRun.taskmesh("status", "--json")).stdout) as { processes: Array<{ name: string; pid?: number; ports?: Record<string, number> }> }).processes;
    const before = await statusJson();
    const envoyPids = before.filter((p) => p.name === "edge" || p.name.endsWith("-sidecar")).map((p) => `${p.name}:${p.pid}`);
    // Calls through the edge all along, while the replica joins and while it leaves: none may fail.
    const failed: string[] = [];
    let calls = 0;
    let calling = true;
    const caller = (async () => {
      while (calling) {
        const response = await api("/v1/queues").catch((error: unknown) => ({ status: 0, text: async () => String(error) }));
        calls++;
        if (response.status !== 200) failed.push(`${response.status} ${await response.text()}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    const up = await upRun.taskmesh("scale", "coordinator=2");
    expect(up.code, up.stderr).toBe(0);
    expect(up.stdout).toContain("coordinator: 2 replicas (coordinator-0, coordinator-1)");
    const after = await statusJson();
    const inbound = after.find((p) => p.name === "coordinator-1-sidecar")?.ports?.inbound;
    expect(inbound, "coordinator-1's sidecar inbound port").toBeGreaterThan(0);
    // The same Envoys as before, still running: the edge learnt of the new replica from its endpoints file.
    expect(envoyPids.filter((id) => !after.some((p) => `${p.name}:${p.pid}` === id)), "Envoys restarted").toEqual([]);
    const host = new RegExp(`^coordinator::127\\.0\\.0\\.1:${inbound}::rq_success::([0-9]+)$`, "m");
    await until("calls through the edge to reach coordinator-1", 30_000, async () => {
      await Promise.all(Array.from({ length: 10 }, () => api("/v1/queues").then((r) => r.arrayBuffer())));
      const clusters = await (await fetch(`${edgeAdmin}/clusters`)).text();
      return Number(host.exec(clusters)?.[1] ?? 0) > 0 ? true : undefined;
    });

    const down = await upRun.taskmesh("scale", "coordinator=1");
    expect(down.code, down.stderr).toBe(0);
    expect((await statusJson()).map((p) => p.name)).not.toContain("coordinator-1");
    expect(await (await fetch(`${edgeAdmin}/clusters`)).text()).not.toContain(`coordinator::127.0.0.1:${inbound}::`);
    await new Promise((r) => setTimeout(r, 1000));
    calling = false;
    await caller;
    expect(calls).toBeGreaterThan(50);
    expect(failed, `failed calls of ${calls}`).toEqual([]);
  });

  it("worker=3: a third worker joins with its sidecar, connects, and runs tasks; worker=1: two leave, draining, and no task is lost", async () => {
    const up = await upRun.taskmesh("scale", "worker=3");
    expect(up.code, up.stderr).toBe(0);
    expect(up.stdout).toContain("worker: 3 replicas (worker-0, worker-1, worker-2)");
    const running = await processes();
    for (const name of ["worker-2", "worker-2-sidecar"]) expect(running.find((p) => p.name === name)?.state, name).toBe("running");
    await until("worker-2 to be connected", 20_000, async () => ((await workers()).some((w) => w.info.workerId === "worker-2" && w.state === "WORKER_STATE_CONNECTED") ? true : undefined));

    // 30 sleeps on 24 slots: the new worker takes its share.
    const ids = await submitSleeps(30, 1500);
    await until("every sleep to run or finish", 30_000, async () => ((await Promise.all(ids.map(task))).filter((t) => t.state !== "TASK_STATE_PENDING").length >= 24 ? true : undefined));
    expect((await Promise.all(ids.map(task))).some((t) => t.workerId === "worker-2")).toBe(true);

    // Down to one while those run: the two that leave drain (finish or hand back), and every sleep still succeeds.
    const down = await upRun.taskmesh("scale", "worker=1");
    expect(down.code, down.stderr).toBe(0);
    expect(down.stdout).toContain("worker: 1 replica (worker-0)");
    const names = (await processes()).map((p) => p.name);
    for (const gone of ["worker-1", "worker-1-sidecar", "worker-2", "worker-2-sidecar"]) expect(names).not.toContain(gone);
    await until("every sleep to succeed", 60_000, async () => ((await Promise.all(ids.map(task))).every((t) => t.state === "TASK_STATE_SUCCEEDED") ? true : undefined));
    const listed = await workers();
    expect(listed.filter((w) => w.state === "WORKER_STATE_CONNECTED").map((w) => w.info.workerId)).toEqual(["worker-0"]);
    expect(listed.find((w) => w.info.workerId === "worker-2")?.state).toBe("WORKER_STATE_GONE");
  });
});

// `up --autoscale worker=1..3`: the supervisor sizes the workers from the
// tasks in flight (policy windows shortened for the test).
describe("taskmesh up --autoscale", { timeout: 180_000 }, () => {
  let upRun: UpRun;
  let token: string;
  const workerProcesses = async (): Promise<string[]> => (JSON.parse((await upRun.taskmesh("status", "--json")).stdout) as { processes: Array<{ name: string; kind: string; service?: string; state: string }> })
    .processes.filter((p) => p.kind === "service" && p.service === "worker" && p.state === "running").map((p) => p.name);

  beforeAll(async () => {
    upRun = await startUp(["--autoscale", "worker=1..3"], {
      TASKMESH_AUTOSCALE_INTERVAL: "500ms", TASKMESH_AUTOSCALE_UP_COOLDOWN: "1s", TASKMESH_AUTOSCALE_DOWN_AFTER: "4s",
    });
    token = await upRun.token();
  }, 400_000); // waiting for the lock included

  afterAll(async () => {
    await upRun?.down();
  }, 60_000);

  it("starts at the minimum, grows to the maximum under a queue, every task succeeds, and shrinks back once it is idle", async () => {
    expect(await workerProcesses()).toEqual(["worker-0"]);
    expect((await upRun.taskmesh("up", "-d", "--autoscale", "worker=3..1")).code).toBe(2);
    // By hand it would be undone at the next reading: refused, saying so.
    const manual = await upRun.taskmesh("scale", "worker=2");
    expect(manual.code).toBe(1);
    expect(manual.stderr).toContain("worker is autoscaled (1..3)");
    const submitted = await Promise.all(Array.from({ length: 40 }, async () => {
      const response = await fetch(`http://${upRun.edge}/v1/tasks`, {
        method: "POST", headers: { authorization: `Bearer ${token}`, "content-type": "application/json" }, body: JSON.stringify({ capability: "sleep", input: { ms: 2000 } }),
      });
      return ((await response.json()) as { task: { id: string } }).task.id;
    }));
    await until("three workers", 30_000, async () => ((await workerProcesses()).length === 3 ? true : undefined));
    await until("every sleep to succeed", 60_000, async () => {
      const states = await Promise.all(submitted.map(async (id) => ((await (await fetch(`http://${upRun.edge}/v1/tasks/${id}`, { headers: { authorization: `Bearer ${token}` } })).json()) as { task: { state: string } }).task.state));
      return states.every((s) => s === "TASK_STATE_SUCCEEDED") ? true : undefined;
    });
    await until("one worker again", 40_000, async () => ((await workerProcesses()).length === 1 ? true : undefined));
    expect(await workerProcesses()).toEqual(["worker-0"]);
  });
});

