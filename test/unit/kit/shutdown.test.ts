import { credentials, makeGenericClientConstructor, type ClientReadableStream } from "@grpc/grpc-js";
import { service as healthService } from "grpc-health-check";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, describe, expect, it } from "vitest";
import { ConfigServiceService, type GetResponse } from "@taskmesh/contracts/gen/taskmesh/config/v1/config";
import { Code, MeshServer, createClient, createLogger, type MeshError, type ServiceHandlers } from "@taskmesh/kit";

// What MeshServer.shutdown() does to the calls and watchers a real client
// has open, beyond what server.test.ts covers: health watchers and handlers
// that ignore their AbortSignal.

type Handlers = ServiceHandlers<typeof ConfigServiceService>;
const unused = async (): Promise<never> => {
  throw new Error("not used by this test");
};
const base: Handlers = { get: unused, put: unused, delete: unused, list: unused, history: unused, watch: unused };
const SERVICE = "taskmesh.config.v1.ConfigService";
const response = (key: string): GetResponse => ({ entry: { key, value: 1, revision: 1n, createRevision: 1n, version: 1n, updateTime: new Date(0) }, revision: 1n });

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function serve(handlers: Partial<Handlers>, graceMs: number) {
  const server = new MeshServer({ name: "shutdown-test", logger: createLogger({ level: "silent" }), shutdownGraceMs: graceMs })
    .addService(ConfigServiceService, { ...base, ...handlers });
  const address = `127.0.0.1:${await server.listen("127.0.0.1:0")}`;
  server.markServing();
  const client = createClient(ConfigServiceService, address);
  cleanups.push(() => server.shutdown(), () => client.close());
  return { server, client, address };
}

const Health = makeGenericClientConstructor(healthService, "Health");

/** A `grpc.health.v1.Health/Watch` stream (what a client-side health checker keeps open), recording each status. */
function watchHealth(address: string, service: string) {
  const client = new Health(address, credentials.createInsecure()) as unknown as {
    watch(request: { service: string }): ClientReadableStream<{ status: string }>;
    close(): void;
  };
  const statuses: string[] = [];
  const call = client.watch({ service });
  call.on("data", (m: { status: string }) => statuses.push(m.status));
  call.on("error", () => undefined); // cancelled at the end, or cut off by the server
  const stop = (): void => {
    call.cancel();
    client.close();
  };
  cleanups.push(stop);
  return { statuses, stop };
}

async function until(check: () => boolean, what: string, timeoutMs = 3000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** Settles to the call's error, or to "pending" when it is still running after `ms`. */
const outcomeWithin = (call: Promise<unknown>, ms: number): Promise<MeshError | "succeeded" | "pending"> =>
  Promise.race([call.then(() => "succeeded" as const, (e: unknown) => e as MeshError), sleep(ms).then(() => "pending" as const)]);

describe("MeshServer shutdown, as the clients see it", () => {
  it("tells health watchers NOT_SERVING as soon as shutdown starts, while calls still drain", async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let started = false;
    const { server, client, address } = await serve({ get: async (r) => { started = true; await gate; return response(r.key); } }, 5000);
    const whole = watchHealth(address, "");
    const service = watchHealth(address, SERVICE);
    await until(() => whole.statuses.length > 0 && service.statuses.length > 0, "the first health status");
    expect([whole.statuses, service.statuses]).toEqual([["SERVING"], ["SERVING"]]);

    const inFlight = client.get({ key: "/draining" });
    await until(() => started, "the call to start");
    const shutdown = server.shutdown();
    await until(() => whole.statuses.length > 1 && service.statuses.length > 1, "NOT_SERVING");
    expect([whole.statuses, service.statuses]).toEqual([["SERVING", "NOT_SERVING"], ["SERVING", "NOT_SERVING"]]);
    expect(server.state).toBe("draining");

    whole.stop();
    service.stop();
    release();
    expect((await inFlight).entry?.key).toBe("/draining");
    expect(await shutdown).toBe("drained");
  });

  // Regression: grpc-health-check's Watch streams never ended, so one open
  // health watcher made every shutdown wait out the grace period ("forced").
  it("drains at once even while a health watcher stays connected", async () => {
    const { server, address } = await serve({}, 1500);
    const watcher = watchHealth(address, "");
    await until(() => watcher.statuses.length > 0, "the first health status");
    const started = Date.now();
    const outcome = await server.shutdown();
    expect({ outcome, fast: Date.now() - started < 1000 }).toEqual({ outcome: "drained", fast: true });
  });

  it("reports forced within the grace period plus a second when a handler ignores its signal", async () => {
    let release!: () => void;
    const stuck = new Promise<void>((r) => (release = r));
    cleanups.push(() => release());
    const { server, client } = await serve({ get: async (r) => { await stuck; return response(r.key); } }, 300);
    const call = client.get({ key: "/stuck" }, { timeoutMs: 10_000 }).catch((e: unknown) => e);
    await sleep(50);
    const started = Date.now();
    expect(await server.shutdown()).toBe("forced");
    expect(Date.now() - started).toBeLessThan(2000);
    expect(server.state).toBe("stopped");
    release();
    await call;
  });

  // Regression: grpc-js forceShutdown() destroys no session while channelz is
  // off, so such a caller used to wait for its own deadline. (A destroyed
  // session would give it CANCELLED, which is not retried: the server itself
  // has to answer UNAVAILABLE.)
  it("cuts off a call whose handler ignores its signal, so its caller can retry elsewhere at once", async () => {
    let release!: () => void;
    const stuck = new Promise<void>((r) => (release = r));
    cleanups.push(() => release());
    const { server, client } = await serve({ get: async (r) => { await stuck; return response(r.key); } }, 300);
    const call = client.get({ key: "/stuck" }, { timeoutMs: 5000 });
    call.catch(() => undefined);
    await sleep(50);
    expect(await server.shutdown()).toBe("forced");
    const outcome = await outcomeWithin(call, 1000);
    expect(outcome).toMatchObject({ code: Code.UNAVAILABLE, reason: "SYS_SHUTTING_DOWN" });
  });
});
