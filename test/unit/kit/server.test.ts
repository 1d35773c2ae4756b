import { afterEach, describe, expect, it } from "vitest";
import { ConfigServiceService, type GetResponse } from "@taskmesh/contracts/gen/taskmesh/config/v1/config";
import { checkHealth } from "@taskmesh/local/health";
import {
  Code, MeshError, MeshServer, createClient, createLogger, invalidArgument,
  type CallContext, type MeshClient, type ServiceHandlers,
} from "@taskmesh/kit";

type Handlers = ServiceHandlers<typeof ConfigServiceService>;
const unused = async (): Promise<never> => {
  throw new Error("not used by this test");
};
const base: Handlers = { get: unused, put: unused, delete: unused, list: unused, history: unused, watch: unused };
const log = createLogger({ level: "silent" });
const SERVICE = "taskmesh.config.v1.ConfigService";

const cleanups: Array<() => Promise<unknown> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A real server on 127.0.0.1:0 with the given handlers, and a client for it. */
async function serve(handlers: Partial<Handlers>, options: { graceMs?: number; ready?: boolean } = {}) {
  const server = new MeshServer({ name: "test", logger: log, shutdownGraceMs: options.graceMs ?? 2000 })
    .addService(ConfigServiceService, { ...base, ...handlers });
  const port = await server.listen("127.0.0.1:0");
  if (options.ready ?? true) server.markServing();
  const address = `127.0.0.1:${port}`;
  const client = createClient(ConfigServiceService, address);
  cleanups.push(() => client.close(), () => server.shutdown());
  return { server, client, address };
}

const entry = (key: string): GetResponse => ({ entry: { key, value: "v", revision: 1n, createRevision: 1n, version: 1n, updateTime: new Date(0) }, revision: 1n });
const get = (client: MeshClient<typeof ConfigServiceService>, key = "/k", timeoutMs?: number) =>
  client.get({ key }, timeoutMs === undefined ? {} : { timeoutMs });
const failure = (p: Promise<unknown>) => p.then(() => { throw new Error("expected the call to fail"); }, (e: unknown) => e as MeshError);

describe("MeshServer", () => {
  it("answers a typed handler, and sends a thrown MeshError with its details", async () => {
    const { client } = await serve({
      get: async (req) => {
        if (req.key === "/bad") throw invalidArgument([{ field: "key", description: "is bad" }], "VAL_INVALID_KEY");
        return entry(req.key);
      },
    });
    expect((await get(client, "/a")).entry?.key).toBe("/a");
    const e = await failure(get(client, "/bad"));
    expect(e).toBeInstanceOf(MeshError);
    expect(e).toMatchObject({ code: Code.INVALID_ARGUMENT, reason: "VAL_INVALID_KEY", violations: [{ field: "key", description: "is bad" }] });
  });

  it("turns an unexpected error into INTERNAL without its message", async () => {
    const { client } = await serve({ get: async () => { throw new Error("relation secret_table does not exist"); } });
    const e = await failure(get(client));
    expect([e.code, e.reason, e.message]).toEqual([Code.INTERNAL, "SYS_INTERNAL", "internal error"]);
  });

  it("reports NOT_SERVING until markServing, refuses calls until then, and SERVING after", async () => {
    const { server, client, address } = await serve({ get: async (r) => entry(r.key) }, { ready: false });
    expect(await checkHealth(address)).toBe("NOT_SERVING");
    expect(await checkHealth(address, SERVICE)).toBe("NOT_SERVING");
    expect(await failure(get(client))).toMatchObject({ code: Code.UNAVAILABLE, reason: "SYS_NOT_READY" });
    server.markServing();
    expect(await checkHealth(address)).toBe("SERVING");
    expect(await checkHealth(address, SERVICE)).toBe("SERVING");
    expect(await checkHealth(address, "taskmesh.other.v1.Nope")).toBe("SERVICE_UNKNOWN");
    expect((await get(client)).entry?.key).toBe("/k");
  });

  it("drains calls in flight at shutdown: they finish, new ones are refused, health goes NOT_SERVING", async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let started = 0;
    const { server, client, address } = await serve({ get: async (r) => { started++; await gate; return entry(r.key); } });
    const inFlight = [get(client, "/one"), get(client, "/two")];
    while (started < 2) await new Promise((r) => setTimeout(r, 10));
    const shutdown = server.shutdown();
    await new Promise((r) => setTimeout(r, 50));
    expect(server.state).toBe("draining");
    const other = createClient(ConfigServiceService, address);
    cleanups.push(() => other.close());
    expect(await failure(get(other))).toMatchObject({ code: Code.UNAVAILABLE });
    release();
    expect((await Promise.all(inFlight)).map((r) => r.entry?.key)).toEqual(["/one", "/two"]);
    expect(await shutdown).toBe("drained");
    expect(server.state).toBe("stopped");
  });

  it("cuts off what is still running when the grace period ends, and says so", async () => {
    let aborted: unknown;
    let entered!: () => void;
    const inHandler = new Promise<void>((resolve) => (entered = resolve));
    const { server, client } = await serve({
      get: (_r, ctx) => new Promise((_, reject) => {
        entered();
        ctx.signal.addEventListener("abort", () => { aborted = ctx.signal.reason; reject(ctx.signal.reason); });
      }),
    }, { graceMs: 300 });
    const call = failure(get(client, "/stuck", 10_000));
    await inHandler; // the call is running when shutdown begins
    const t0 = Date.now();
    expect(await server.shutdown()).toBe("forced");
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(aborted).toMatchObject({ code: Code.UNAVAILABLE, reason: "SYS_SHUTTING_DOWN" });
    expect((await call).code).toBe(Code.UNAVAILABLE);
  });

  it("ends a server stream at once when shutdown begins, so its client can resume elsewhere", async () => {
    const { server, client } = await serve({
      watch: async (_req, send, ctx) => {
        await send({ events: [], revision: 7n, snapshotComplete: true });
        await new Promise((_, reject) => ctx.signal.addEventListener("abort", () => reject(ctx.signal.reason)));
      },
    }, { graceMs: 5000 });
    const messages: bigint[] = [];
    const reading = (async () => {
      for await (const m of client.watch({ prefix: "/", afterRevision: undefined })) messages.push(m.revision);
    })().then(() => undefined, (e: unknown) => e as MeshError);
    while (messages.length === 0) await new Promise((r) => setTimeout(r, 10));
    const t0 = Date.now();
    expect(await server.shutdown()).toBe("drained");
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(await reading).toMatchObject({ code: Code.UNAVAILABLE, reason: "SYS_SHUTTING_DOWN" });
    expect(messages).toEqual([7n]);
  });
});

describe("deadlines and cancellation across hops", () => {
  /** Server 2 records the deadline and signal its handler gets; server 1 calls it on behalf of its caller. */
  async function twoHops() {
    const seen: { deadline?: number | undefined; aborted?: boolean; called: number } = { called: 0 };
    const downstream = await serve({
      get: async (r, ctx) => {
        seen.called++;
        seen.deadline = ctx.deadline;
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, r.key === "/slow" ? 3000 : 0);
          ctx.signal.addEventListener("abort", () => { seen.aborted = true; clearTimeout(t); resolve(); });
        });
        return entry(r.key);
      },
    });
    let parentCtx: CallContext | undefined;
    const upstream = await serve({
      get: async (r, ctx) => {
        parentCtx = ctx;
        return downstream.client.get({ key: r.key }, { parent: ctx, timeoutMs: 60_000 });
      },
    });
    return { seen, upstream, parent: () => parentCtx };
  }

  it("gives the downstream call no more than the caller's remaining time", async () => {
    const { seen, upstream } = await twoHops();
    const before = Date.now();
    await get(upstream.client, "/fast", 2000);
    expect(seen.deadline).toBeDefined();
    expect(seen.deadline!).toBeLessThanOrEqual(before + 2000 + 50);
    expect(seen.deadline!).toBeGreaterThan(before + 1000);
  });

  it("fails at once with DEADLINE_EXCEEDED, without calling, when the caller has no time left", async () => {
    const { seen } = await twoHops();
    const client = createClient(ConfigServiceService, "127.0.0.1:1");
    cleanups.push(() => client.close());
    const e = await failure(client.get({ key: "/x" }, { parent: { signal: new AbortController().signal, deadline: Date.now() - 1 } }));
    expect(e).toMatchObject({ code: Code.DEADLINE_EXCEEDED, reason: "SYS_DEADLINE_EXCEEDED" });
    expect(seen.called).toBe(0);
  });

  it("cancels the downstream call when the caller's deadline passes", async () => {
    const { seen, upstream } = await twoHops();
    const e = await failure(get(upstream.client, "/slow", 300));
    expect(e.code).toBe(Code.DEADLINE_EXCEEDED);
    const until = Date.now() + 2000;
    while (!seen.aborted && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    expect(seen.aborted).toBe(true);
  });
});
