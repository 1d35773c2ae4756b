import { readFileSync } from "node:fs";
import { connect as tcpConnect } from "node:net";
import { networkInterfaces } from "node:os";
import { join } from "node:path";
import { connect as tlsConnect } from "node:tls";
import type { Metadata } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ListTasksRequest, TaskServiceService } from "@taskmesh/contracts/gen/taskmesh/coordinator/v1/task_service";
import { createClient, type MeshClient } from "@taskmesh/kit";
import { bearer, startUp, type UpRun } from "../support/up.js";

interface Status {
  processes: Array<{ name: string; pid?: number; state: string; ports: Record<string, number> }>;
}

/** What a steady stream of calls saw: how many succeeded, and each failure. */
interface Load {
  ok: number;
  failed: unknown[];
  stop(): Promise<void>;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `probe` every 100 ms until it returns a value other than undefined, or fails after `ms`. */
async function until<T>(what: string, ms: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(100);
  }
}

// The whole mesh as `taskmesh up -d --replicas coordinator=3` runs it, on its own state dir and ports;
// a client reaches it only through the edge, as a user would.
describe("the mesh under up: failover, loopback-only apps, certificate rotation", { timeout: 90_000 }, () => {
  let upRun: UpRun;
  let client: MeshClient<typeof TaskServiceService>;
  let auth: Metadata; // the edge wants an access token

  const processOf = async (name: string): Promise<Status["processes"][number]> => {
    const status = JSON.parse((await upRun.taskmesh("status", "--json")).stdout) as Status;
    const found = status.processes.find((p) => p.name === name);
    if (!found) throw new Error(`status shows no ${name}`);
    return found;
  };
  const admin = async (port: number, path: string): Promise<string> => (await fetch(`http://127.0.0.1:${port}${path}`)).text();

  /** ListTasks through the edge at `perSecond`, each call on its own (a failure does not slow the stream). */
  const stream = (perSecond: number): Load => {
    const calls: Promise<void>[] = [];
    const load: Load = {
      ok: 0,
      failed: [],
      stop: async () => {
        clearInterval(timer);
        await Promise.all(calls);
      },
    };
    const timer = setInterval(() => {
      calls.push(client.listTasks(ListTasksRequest.fromPartial({ pageSize: 1 }), { timeoutMs: 5000, metadata: auth }).then(
        () => void load.ok++,
        (error: unknown) => void load.failed.push(error),
      ));
    }, 1000 / perSecond);
    return load;
  };

  beforeAll(async () => {
    upRun = await startUp(["--replicas", "coordinator=3"]);
    client = createClient(TaskServiceService, upRun.edge);
    auth = bearer(await upRun.token());
    await client.listTasks(ListTasksRequest.fromPartial({ pageSize: 1 }), { timeoutMs: 5000, metadata: auth });
  }, 400_000); // waiting for the lock included

  afterAll(async () => {
    try {
      client?.close();
    } finally {
      await upRun?.down();
    }
  }, 60_000);

  it("kill -9 of a coordinator replica: calls through the edge keep succeeding, and it rejoins the edge's rotation once the supervisor restarted it", async () => {
    const victim = await processOf("coordinator-1");
    const inbound = (await processOf("coordinator-1-sidecar")).ports.inbound!;
    const edgeAdmin = Number(upRun.env.TASKMESH_EDGE_ADMIN_PORT);
    // The edge's view of that replica (its sidecar's inbound address) in admin /clusters.
    const stat = async (name: string): Promise<string> => {
      const line = (await admin(edgeAdmin, "/clusters")).split("\n").find((l) => l.startsWith(`coordinator::127.0.0.1:${inbound}::${name}::`));
      return line?.split("::").at(-1) ?? "(no such endpoint)";
    };
    const flags = (): Promise<string> => stat("health_flags");
    // Right after up on a loaded machine the edge's first health check of a replica can still be failing.
    await until("the edge to see coordinator-1 healthy", 15_000, async () => ((await flags()) === "healthy" ? true : undefined));

    const load = stream(20);
    await sleep(1000);
    process.kill(victim.pid!, "SIGKILL");
    // The edge's health check marks it failed (outlier detection may eject it first), unless the supervisor
    // has it serving again before two checks 2 s apart failed: on a quiet machine a restart takes about that long.
    let markedFailed = false;
    await until("the edge's health check to mark coordinator-1 failed, or coordinator-1 to be back", 15_000, async () => {
      if ((await flags()).includes("/failed_active_hc")) return (markedFailed = true);
      const p = await processOf("coordinator-1");
      return p.state === "running" && p.pid !== victim.pid ? true : undefined;
    });
    const back = await until("the supervisor to restart coordinator-1", 30_000, async () => {
      const p = await processOf("coordinator-1");
      return p.state === "running" && p.pid !== victim.pid ? p : undefined;
    });
    await until("the edge to see coordinator-1 healthy again", 20_000, async () => ((await flags()) === "healthy" ? true : undefined));
    // Back in the rotation: the edge sends it calls again.
    const servedBefore = Number(await stat("rq_success"));
    await sleep(2000);
    await load.stop();
    expect(Number(await stat("rq_success"))).toBeGreaterThan(servedBefore);

    expect(back.pid).not.toBe(victim.pid);
    console.info(`mesh: the edge's health check ${markedFailed ? "marked coordinator-1 failed while it was down" : "saw coordinator-1 back before two checks failed"}`);
    // At most the calls in flight on the killed replica fail; the stream went on.
    expect(load.failed.length, String(load.failed)).toBeLessThanOrEqual(3);
    expect(load.ok).toBeGreaterThanOrEqual(100);
  });

  it("taskmesh restart <process>: it stops, the supervisor starts it again under a new pid, and the command returns once it runs", async () => {
    const before = await processOf("worker-0");
    const restarted = await upRun.taskmesh("restart", "worker-0");
    expect(restarted.code, restarted.stderr).toBe(0);
    expect(restarted.stdout).toMatch(/^taskmesh: worker-0 restarted \(pid \d+ → \d+\) in [\d.]+ s$/m);
    const after = await processOf("worker-0");
    expect(after.state).toBe("running");
    expect(after.pid).not.toBe(before.pid);
    const unknown = await upRun.taskmesh("restart", "no-such-process");
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('no process "no-such-process" in this run; it has ');
  });

  it("an app's own port is closed from outside loopback; its sidecar's inbound port there takes mTLS only", async () => {
    const external = Object.values(networkInterfaces()).flat().find((a) => a?.family === "IPv4" && !a.internal)?.address;
    expect(external, "this machine has no non-loopback IPv4 address to test from").toBeDefined();
    const app = (await processOf("coordinator-0")).ports.app!;
    const inbound = (await processOf("coordinator-0-sidecar")).ports.inbound!;

    const tcp = await new Promise<string>((resolve) => {
      const socket = tcpConnect({ host: external!, port: app });
      socket.once("connect", () => (socket.destroy(), resolve("connected")));
      socket.once("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
    });
    expect(tcp).toBe("ECONNREFUSED");

    /** A TLS connection to the inbound port on the external address; resolves once the server speaks HTTP/2 (its SETTINGS frame). */
    const handshake = (identity?: string): Promise<string> => new Promise((resolve, reject) => {
      const certs = join(upRun.stateDir, "certs");
      const socket = tlsConnect({
        host: external!, port: inbound, servername: "localhost", ALPNProtocols: ["h2"], ca: readFileSync(join(certs, "ca.pem")),
        ...(identity ? { cert: readFileSync(join(certs, identity, "cert.pem")), key: readFileSync(join(certs, identity, "key.pem")) } : {}),
      });
      const timer = setTimeout(() => (socket.destroy(), reject(new Error("no answer in 3 s"))), 3000);
      socket.once("secureConnect", () => socket.write("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"));
      socket.once("data", () => (clearTimeout(timer), socket.destroy(), resolve(socket.alpnProtocol || "")));
      socket.once("error", (e) => (clearTimeout(timer), reject(e)));
      socket.once("close", () => (clearTimeout(timer), reject(new Error("closed without an answer"))));
    });
    await expect(handshake()).rejects.toThrow(/certificate required|alert number 116/);
    await expect(handshake("edge")).resolves.toBe("h2");
  });

  it("certs rotate under a steady stream of calls: none fails, and the sidecars serve the new certificate", async () => {
    const sidecarAdmin = (await processOf("coordinator-0-sidecar")).ports.admin!;
    const served = async (): Promise<string[]> => {
      const body = JSON.parse(await admin(sidecarAdmin, "/certs")) as { certificates: { cert_chain?: { serial_number: string }[] }[] };
      return body.certificates.flatMap((c) => c.cert_chain ?? []).map((c) => c.serial_number.toLowerCase());
    };
    const before = await served();
    const load = stream(20);
    await sleep(1000);
    const rotated = await upRun.taskmesh("certs", "rotate", "--json");
    expect(rotated.code, rotated.stderr).toBe(0);
    const identities = JSON.parse(rotated.stdout) as Array<{ name: string; serial: string; from: string | null }>;
    const coordinator = identities.find((i) => i.name === "coordinator")!;
    expect(coordinator.serial).not.toBe(coordinator.from);
    expect(before).toContain(coordinator.from!.toLowerCase());
    await until("coordinator-0-sidecar to serve the new certificate", 10_000, async () => ((await served()).includes(coordinator.serial.toLowerCase()) ? true : undefined));
    expect(await served()).not.toContain(coordinator.from!.toLowerCase());
    await sleep(2000);
    await load.stop();

    expect(load.failed, String(load.failed)).toEqual([]);
    expect(load.ok).toBeGreaterThanOrEqual(40);
  });
});
