import { Registry } from "prom-client";
import { afterEach, describe, expect, it } from "vitest";
import { ConfigServiceService, type GetResponse } from "@taskmesh/contracts/gen/taskmesh/config/v1/config";
import { MeshServer, createClient, createLogger, invalidArgument, type ServiceHandlers } from "@taskmesh/kit";
import { cachedLoad, kafkaConsumerLag, rpcMetrics, startMetricsServer, type LagAdmin } from "@taskmesh/kit/metrics";

type Handlers = ServiceHandlers<typeof ConfigServiceService>;
const unused = async (): Promise<never> => {
  throw new Error("not used by this test");
};
const base: Handlers = { get: unused, put: unused, delete: unused, list: unused, history: unused, watch: unused };
const log = createLogger({ level: "silent" });
const SERVICE = "taskmesh.config.v1.ConfigService";
const entry = (key: string): GetResponse => ({ entry: { key, value: "v", revision: 1n, createRevision: 1n, version: 1n, updateTime: new Date(0) }, revision: 1n });

const cleanups: Array<() => Promise<unknown> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A real server on loopback recording into a registry of its own, and a client for it. */
async function serve(handlers: Partial<Handlers>) {
  const registry = new Registry();
  const server = new MeshServer({ name: "test", logger: log, metrics: rpcMetrics(registry) }).addService(ConfigServiceService, { ...base, ...handlers });
  const port = await server.listen("127.0.0.1:0");
  server.markServing();
  const client = createClient(ConfigServiceService, `127.0.0.1:${port}`);
  cleanups.push(() => client.close(), () => server.shutdown());
  return { registry, client };
}

/** The value of one sample of `name` whose labels include `labels`. */
async function sample(registry: Registry, name: string, labels: Record<string, string>): Promise<number | undefined> {
  const family = (await registry.getMetricsAsJSON()).find((m) => m.name === name.replace(/_(count|sum|bucket)$/, ""));
  const found = (family?.values as Array<{ metricName?: string; labels: Record<string, unknown>; value: number }> | undefined)
    ?.find((v) => (v.metricName ?? family!.name) === name && Object.entries(labels).every(([k, want]) => String(v.labels[k]) === want));
  return found?.value;
}

describe("RPC metrics", () => {
  it("counts and times a success and a failure of a unary method by code, and nothing stays in flight", async () => {
    const { registry, client } = await serve({
      get: async (req) => {
        if (req.key === "/bad") throw invalidArgument([{ field: "key", description: "is bad" }]);
        return entry(req.key);
      },
    });
    await client.get({ key: "/a" });
    await client.get({ key: "/b" });
    await client.get({ key: "/bad" }).catch(() => undefined);
    const ok = { service: SERVICE, method: "Get", code: "OK" };
    const bad = { service: SERVICE, method: "Get", code: "INVALID_ARGUMENT" };
    expect(await sample(registry, "rpc_server_requests_total", ok)).toBe(2);
    expect(await sample(registry, "rpc_server_requests_total", bad)).toBe(1);
    expect(await sample(registry, "rpc_server_duration_seconds_count", ok)).toBe(2);
    expect(await sample(registry, "rpc_server_duration_seconds_count", bad)).toBe(1);
    expect(await sample(registry, "rpc_server_duration_seconds_sum", ok)).toBeGreaterThan(0);
    expect(await sample(registry, "rpc_server_duration_seconds_bucket", { ...ok, le: "+Inf" })).toBe(2);
    expect(await sample(registry, "rpc_server_in_flight", { service: SERVICE, method: "Get" })).toBe(0);
  });

  it("shows a server stream in flight while it is open, and counts it once it ends", async () => {
    let finish!: () => void;
    const open = new Promise<void>((r) => (finish = r));
    const { registry, client } = await serve({
      watch: async (_req, send) => {
        await send({ events: [], revision: 1n, snapshotComplete: true });
        await open;
      },
    });
    const reading = (async () => {
      for await (const _ of client.watch({ prefix: "/", afterRevision: undefined }));
    })();
    while ((await sample(registry, "rpc_server_in_flight", { method: "Watch" })) !== 1) await new Promise((r) => setTimeout(r, 10));
    expect(await sample(registry, "rpc_server_requests_total", { method: "Watch" })).toBeUndefined();
    finish();
    await reading;
    expect(await sample(registry, "rpc_server_requests_total", { service: SERVICE, method: "Watch", code: "OK" })).toBe(1);
    expect(await sample(registry, "rpc_server_in_flight", { method: "Watch" })).toBe(0);
  });
});

describe("metrics endpoint", () => {
  it("serves the registry as Prometheus text at /metrics and 404 elsewhere", async () => {
    const { registry, client } = await serve({ get: async (req) => entry(req.key) });
    await client.get({ key: "/a" });
    const metrics = await startMetricsServer({ address: "127.0.0.1:0", registry });
    cleanups.push(() => metrics.close());
    const res = await fetch(`http://127.0.0.1:${metrics.port}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/plain");
    expect(await res.text()).toContain(`rpc_server_requests_total{service="${SERVICE}",method="Get",code="OK"} 1`);
    expect((await fetch(`http://127.0.0.1:${metrics.port}/`)).status).toBe(404);
  });
});

describe("cachedLoad", () => {
  it("shares one load between concurrent callers, reuses it within the ttl, and does not keep a failure", async () => {
    let loads = 0;
    let fail = false;
    const read = cachedLoad(async () => {
      loads++;
      if (fail) throw new Error("down");
      return loads;
    }, 60_000);
    expect(await Promise.all([read(), read()])).toEqual([1, 1]);
    expect(await read()).toBe(1);
    expect(loads).toBe(1);
    const expired = cachedLoad(async () => {
      loads++;
      if (fail) throw new Error("down");
      return loads;
    }, 0);
    fail = true;
    await expect(expired()).rejects.toThrow("down");
    fail = false;
    expect(await expired()).toBe(loads);
  });
});

describe("kafkaConsumerLag", () => {
  it("reports high watermark minus the committed offset per partition, from the low watermark when nothing is committed", async () => {
    const admin: LagAdmin = {
      fetchTopicOffsets: async () => [
        { partition: 0, offset: "100", high: "100", low: "0" },
        { partition: 1, offset: "40", high: "40", low: "10" },
      ],
      fetchOffsets: async ({ groupId }) => [{
        topic: "taskmesh.tasks", partitions: groupId === "g" ? [{ partition: 0, offset: "97", metadata: null }, { partition: 1, offset: "-1", metadata: null }] : [],
      }],
    };
    const registry = new Registry();
    kafkaConsumerLag({ admin, groups: [{ groupId: "g", topics: ["taskmesh.tasks"] }], registry });
    expect(await sample(registry, "kafka_consumer_lag", { group: "g", topic: "taskmesh.tasks", partition: "0" })).toBe(3);
    expect(await sample(registry, "kafka_consumer_lag", { group: "g", topic: "taskmesh.tasks", partition: "1" })).toBe(30);
  });

  it("reads the groups at each scrape and gets its admin client lazily, asking nothing while there is no group", async () => {
    let asked = 0;
    const admin: LagAdmin = {
      fetchTopicOffsets: async () => [{ partition: 0, offset: "5", high: "5", low: "0" }],
      fetchOffsets: async () => [{ topic: "t", partitions: [{ partition: 0, offset: "2", metadata: null }] }],
    };
    let groups: Array<{ groupId: string; topics: string[] }> = [];
    const registry = new Registry();
    kafkaConsumerLag({ admin: async () => (asked++, admin), groups: () => groups, registry, cacheMs: 0 });
    expect(await sample(registry, "kafka_consumer_lag", {})).toBeUndefined();
    expect(asked).toBe(0);
    groups = [{ groupId: "shared", topics: ["t"] }];
    expect(await sample(registry, "kafka_consumer_lag", { group: "shared", topic: "t", partition: "0" })).toBe(3);
  });
});
