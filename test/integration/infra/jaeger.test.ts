import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureJaeger, jaegerSpec } from "@taskmesh/local/provision/jaeger";
import { freePort } from "@taskmesh/local/secrets";
import { runProcess, type RunningProcess } from "@taskmesh/local/supervisor";
import { SpanBuffer } from "@taskmesh/local/span-buffer";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-grpc";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { SimpleSpanProcessor, TracerProvider } from "@opentelemetry/sdk-trace";

// The pinned Jaeger v2 on free ports in a temporary directory, run by the supervisor.
const dir = mkdtempSync(join(tmpdir(), "taskmesh-test-jaeger-"));
const logDir = join(dir, "logs");
const ports = { uiPort: 0, otlpGrpcPort: 0, otlpHttpPort: 0, queryGrpcPort: 0 };
let running: RunningProcess | undefined;

/** Four distinct free ports. */
async function freePorts(): Promise<[number, number, number, number]> {
  const found = new Set<number>();
  while (found.size < 4) found.add(await freePort());
  const [a, b, c, d] = found;
  return [a!, b!, c!, d!];
}

interface JaegerTrace {
  traceID: string;
  spans: Array<{ traceID: string; spanID: string; operationName: string; processID: string; tags: Array<{ key: string; value: unknown }> }>;
  processes: Record<string, { serviceName: string }>;
}

/** The trace as Jaeger's query API serves it, polled for up to 15 s; undefined when it never showed up. */
async function traceFromJaeger(traceId: string): Promise<JaegerTrace | undefined> {
  let trace: JaegerTrace | undefined;
  const until = Date.now() + 15_000;
  while (!trace && Date.now() < until) {
    const response = await fetch(`http://127.0.0.1:${ports.uiPort}/api/traces/${traceId}`);
    if (response.status === 200) trace = ((await response.json()) as { data: JaegerTrace[] }).data[0];
    else await response.body?.cancel();
    if (!trace) await new Promise((r) => setTimeout(r, 200));
  }
  return trace;
}

beforeAll(async () => {
  const t = Date.now();
  await ensureJaeger();
  const provisionMs = Date.now() - t;
  [ports.uiPort, ports.otlpGrpcPort, ports.otlpHttpPort, ports.queryGrpcPort] = await freePorts();
  const start = Date.now();
  running = await runProcess(jaegerSpec({ stateDir: join(dir, "state"), logDir, ...ports }), { logDir });
  console.info(`jaeger: provisioning ${provisionMs} ms, start ${Date.now() - start} ms`);
}, 600_000); // a first build of Jaeger takes minutes

afterAll(async () => {
  await running?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe("jaeger v2 (local runtime)", () => {
  it("stores a span sent with OTLP/HTTP JSON and serves it from the query API", async () => {
    const traceId = randomBytes(16).toString("hex");
    const spanId = randomBytes(8).toString("hex");
    const service = `test-jaeger-${randomBytes(3).toString("hex")}`;
    const now = BigInt(Date.now()) * 1_000_000n;
    const body = {
      resourceSpans: [{
        resource: { attributes: [{ key: "service.name", value: { stringValue: service } }] },
        scopeSpans: [{
          scope: { name: "taskmesh-test" },
          spans: [{
            traceId, spanId, name: "test-operation", kind: 2,
            startTimeUnixNano: String(now - 5_000_000n), endTimeUnixNano: String(now),
            attributes: [{ key: "taskmesh.test", value: { stringValue: "yes" } }],
          }],
        }],
      }],
    };
    const sent = await fetch(`http://127.0.0.1:${ports.otlpHttpPort}/v1/traces`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    expect(sent.status).toBe(200);

    const trace = await traceFromJaeger(traceId);
    expect(trace, `trace ${traceId} never showed up`).toBeDefined();
    expect(trace!.traceID).toBe(traceId);
    expect(trace!.spans).toHaveLength(1);
    const [span] = trace!.spans;
    expect(span).toMatchObject({ spanID: spanId, operationName: "test-operation" });
    expect(trace!.processes[span!.processID]?.serviceName).toBe(service);
    expect(span!.tags).toContainEqual(expect.objectContaining({ key: "taskmesh.test", value: "yes" }));

    const services = await fetch(`http://127.0.0.1:${ports.uiPort}/api/services`);
    expect(services.status).toBe(200);
    expect(((await services.json()) as { data: string[] }).data).toContain(service);
  });

  it("gets the spans exported while it was not there yet, once the span buffer that held its port delivers them", async () => {
    const buffer = new SpanBuffer();
    const port = await freePort();
    await buffer.listen(`127.0.0.1:${port}`);
    const service = `test-buffered-${randomBytes(3).toString("hex")}`;
    const provider = new TracerProvider({
      resource: resourceFromAttributes({ "service.name": service }),
      spanProcessors: [new SimpleSpanProcessor({ exporter: new OTLPTraceExporter({ url: `http://127.0.0.1:${port}` }) })],
    });
    const traceIds: string[] = [];
    for (const name of ["first", "second"]) {
      const span = provider.getTracer("taskmesh-test").startSpan(`buffered-${name}`);
      traceIds.push(span.spanContext().traceId);
      span.end();
    }
    await provider.forceFlush();
    await provider.shutdown();
    expect(buffer.size).toBe(2);
    await buffer.close();

    expect(await buffer.deliver(`127.0.0.1:${ports.otlpGrpcPort}`)).toEqual({ delivered: 2, lost: 0 });
    expect(buffer.size).toBe(0);
    for (const [i, traceId] of traceIds.entries()) {
      const trace = await traceFromJaeger(traceId);
      expect(trace, `trace ${traceId} never showed up`).toBeDefined();
      expect(trace!.spans.map((s) => s.operationName)).toEqual([`buffered-${i === 0 ? "first" : "second"}`]);
      expect(trace!.processes[trace!.spans[0]!.processID]?.serviceName).toBe(service);
    }
  });

  it("answers 404 for a trace it does not have", async () => {
    const response = await fetch(`http://127.0.0.1:${ports.uiPort}/api/traces/${randomBytes(16).toString("hex")}`);
    await response.body?.cancel();
    expect(response.status).toBe(404);
  });
});
