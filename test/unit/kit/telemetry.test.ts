import * as grpc from "@grpc/grpc-js";
import { SpanKind } from "@opentelemetry/api";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import {
  INSTRUMENTED_PACKAGES,
  TelemetryConfigError,
  createInstrumentations,
  resolveTelemetryConfig,
  telemetryOptionsFromEnv,
} from "../../../packages/kit/src/telemetry/index.js";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
// The pinned Node 24 from the `node` devDependency, never the system node.
const NODE = fileURLToPath(new URL("node_modules/.bin/node", `file://${ROOT}`));
const PRELOAD = ["--import", "tsx", "--import", "./packages/kit/src/telemetry/register.ts"];
const ROUNDTRIP = "test/fixtures/telemetry/grpc-roundtrip.ts";
const ECHO_SPAN = "grpc.taskmesh.test.v1.EchoService/Echo";
const CHILD_TIMEOUT_MS = 15_000;
// The kit's EXIT_CODES.badConfig, which register.ts mirrors.
const BAD_CONFIG_EXIT = 2;

interface ChildResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the pinned node from the repo root with only the given OTEL_* settings. */
function runNode(args: readonly string[], env: Record<string, string> = {}): Promise<ChildResult> {
  const inherited = Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !name.startsWith("OTEL_") && name !== "TASKMESH_INSTANCE"),
  );
  return new Promise((resolve, reject) => {
    const child = spawn(NODE, args, {
      cwd: ROOT,
      env: { ...inherited, ...env },
      stdio: ["ignore", "pipe", "pipe"],
      timeout: CHILD_TIMEOUT_MS,
    });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

interface PrintedSpan {
  name: string;
  kind: number;
  traceId: string;
  spanId: string;
  parentSpanId: string | undefined;
  serviceName: string | undefined;
  instanceId: string | undefined;
}

/**
 * Reads the spans ConsoleSpanExporter printed (util.inspect of one object per
 * span: a line "{", two-space-indented fields, a line "}").
 */
function parseConsoleSpans(stdout: string): PrintedSpan[] {
  const blocks = [...stdout.matchAll(/^\{\n([\s\S]*?)^\}$/gm)].map((match) => match[1] ?? "");
  return blocks.map((block) => {
    const field = (pattern: RegExp): string | undefined => pattern.exec(block)?.[1];
    return {
      name: field(/^ {2}name: '([^']*)'/m) ?? "",
      kind: Number(field(/^ {2}kind: (\d+)/m)),
      traceId: field(/^ {2}traceId: '([0-9a-f]{32})'/m) ?? "",
      spanId: field(/^ {2}id: '([0-9a-f]{16})'/m) ?? "",
      parentSpanId: field(/^ {2}parentSpanContext: \{[\s\S]*?^ {4}spanId: '([0-9a-f]{16})'/m),
      serviceName: field(/'service\.name': '([^']*)'/),
      instanceId: field(/'service\.instance\.id': '([^']*)'/),
    };
  });
}

/** The JSON log lines a child wrote to stdout. */
function parseLogLines(stdout: string): Record<string, unknown>[] {
  return stdout
    .split("\n")
    .filter((line) => line.startsWith('{"'))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

describe("telemetryOptionsFromEnv", () => {
  it("leaves everything to the defaults when no variable is set", () => {
    expect(telemetryOptionsFromEnv({})).toEqual({});
    const config = resolveTelemetryConfig(telemetryOptionsFromEnv({}));
    expect(config).toMatchObject({
      enabled: true,
      exporters: ["otlp"],
      otlpEndpoint: "http://127.0.0.1:4317",
      sampler: "parentbased_always_on",
      samplerRatio: 1,
    });
    expect(Object.isFrozen(config)).toBe(true);
  });

  it("maps the standard variables and TASKMESH_INSTANCE", () => {
    const options = telemetryOptionsFromEnv({
      OTEL_SERVICE_NAME: "scheduler",
      TASKMESH_INSTANCE: "scheduler-2",
      OTEL_TRACES_EXPORTER: "console, otlp",
      OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4317",
      OTEL_TRACES_SAMPLER: "parentbased_traceidratio",
      OTEL_TRACES_SAMPLER_ARG: "0.25",
      OTEL_BSP_SCHEDULE_DELAY: "1000",
    });
    expect(options).toEqual({
      serviceName: "scheduler",
      instanceId: "scheduler-2",
      exporters: ["console", "otlp"],
      otlpEndpoint: "http://collector:4317",
      sampler: "parentbased_traceidratio",
      samplerRatio: 0.25,
      batchDelayMs: 1000,
    });
  });

  it("prefers the traces endpoint, reads none and OTEL_SDK_DISABLED", () => {
    expect(
      telemetryOptionsFromEnv({
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "https://traces:4317",
        OTEL_EXPORTER_OTLP_ENDPOINT: "http://all:4317",
      }).otlpEndpoint,
    ).toBe("https://traces:4317");
    expect(telemetryOptionsFromEnv({ OTEL_TRACES_EXPORTER: "none" }).exporters).toEqual([]);
    expect(telemetryOptionsFromEnv({ OTEL_SDK_DISABLED: "TRUE" }).enabled).toBe(false);
  });

  it("ignores the sampler argument for samplers that take none", () => {
    expect(telemetryOptionsFromEnv({ OTEL_TRACES_SAMPLER: "always_on", OTEL_TRACES_SAMPLER_ARG: "abc" })).toEqual({
      sampler: "always_on",
    });
  });

  it.each([
    [{ OTEL_TRACES_SAMPLER: "traceidratio", OTEL_TRACES_SAMPLER_ARG: "abc" }, "OTEL_TRACES_SAMPLER_ARG"],
    [{ OTEL_TRACES_SAMPLER: "parentbased_traceidratio", OTEL_TRACES_SAMPLER_ARG: "1.5" }, "OTEL_TRACES_SAMPLER_ARG"],
    [{ OTEL_TRACES_SAMPLER: "jaeger_remote" }, "OTEL_TRACES_SAMPLER"],
    [{ OTEL_TRACES_EXPORTER: "zipkin" }, "OTEL_TRACES_EXPORTER"],
    [{ OTEL_TRACES_EXPORTER: "none,console" }, "OTEL_TRACES_EXPORTER"],
    [{ OTEL_EXPORTER_OTLP_ENDPOINT: "127.0.0.1:4317" }, "OTEL_EXPORTER_OTLP_ENDPOINT"],
    [{ OTEL_EXPORTER_OTLP_PROTOCOL: "http/protobuf" }, "OTEL_EXPORTER_OTLP_PROTOCOL"],
    [{ OTEL_SDK_DISABLED: "yes" }, "OTEL_SDK_DISABLED"],
    [{ OTEL_BSP_MAX_QUEUE_SIZE: "-1" }, "OTEL_BSP_MAX_QUEUE_SIZE"],
  ])("rejects %o naming %s", (env, variable) => {
    let caught: unknown;
    try {
      telemetryOptionsFromEnv(env);
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(TelemetryConfigError);
    expect((caught as TelemetryConfigError).setting).toBe(variable);
    expect((caught as TelemetryConfigError).message).toContain(variable);
  });

  it("rejects bad programmatic options naming the option", () => {
    expect(() => resolveTelemetryConfig({ samplerRatio: 2 })).toThrow(/^samplerRatio: /);
    expect(() => resolveTelemetryConfig({ shutdownTimeoutMs: 0 })).toThrow(/^shutdownTimeoutMs: /);
  });
});

describe("instrumentation hook", () => {
  it("lets the ESM loader through to every package an instrumentation patches", () => {
    const instrumentations = createInstrumentations();
    try {
      const hooked = new Set(instrumentations.flatMap((i) => i.getModuleDefinitions().map((d) => d.name)));
      expect([...hooked].sort()).toEqual([...INSTRUMENTED_PACKAGES].sort());
    } finally {
      for (const instrumentation of instrumentations) instrumentation.disable();
    }
  });
});

describe("register.ts preload (child processes)", () => {
  it("traces an imported @grpc/grpc-js call: client and server span in one trace", async () => {
    const { code, stdout, stderr } = await runNode([...PRELOAD, ROUNDTRIP], {
      OTEL_TRACES_EXPORTER: "console",
      OTEL_SERVICE_NAME: "telemetry-fixture",
      TASKMESH_INSTANCE: "fixture-1",
    });
    expect(stderr).toBe("");
    expect(code).toBe(0);
    expect(stdout).toContain("FIXTURE echo ping");

    const echoSpans = parseConsoleSpans(stdout).filter((span) => span.name === ECHO_SPAN);
    const client = echoSpans.find((span) => span.kind === SpanKind.CLIENT);
    const server = echoSpans.find((span) => span.kind === SpanKind.SERVER);
    expect(echoSpans).toHaveLength(2);
    expect(client?.traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(server?.traceId).toBe(client?.traceId);
    // W3C traceparent carried the client span across the wire.
    expect(server?.parentSpanId).toBe(client?.spanId);
    expect(server).toMatchObject({ serviceName: "telemetry-fixture", instanceId: "fixture-1" });

    // The handler's log line (pino instrumentation active) names the server span.
    const handled = parseLogLines(stdout).find((line) => line["msg"] === "echo handled");
    expect(handled).toMatchObject({ trace_id: server?.traceId, span_id: server?.spanId, level: "info" });

    // shutdownTelemetry: one promise for every caller, then stopped.
    expect(stdout).toContain("FIXTURE shutdown-idempotent true");
    expect(stdout).toContain("FIXTURE state stopped");
  });

  it("traces nothing from the same program when the loader hook is left out", async () => {
    // Control for the test above: same SDK, no module.register of the hook.
    const { code, stdout } = await runNode(
      ["--import", "tsx", "--import", "./test/fixtures/telemetry/start-without-hook.ts", ROUNDTRIP],
    );
    expect(code).toBe(0);
    expect(stdout).toContain("FIXTURE echo ping");
    expect(parseConsoleSpans(stdout).filter((span) => span.name === ECHO_SPAN)).toEqual([]);
  });

  it("exports over OTLP/gRPC by default, without tracing its own exports", async () => {
    const received: Buffer[] = [];
    const identity = (bytes: Buffer): Buffer => bytes;
    const collector = new grpc.Server();
    collector.addService(
      {
        export: {
          path: "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
          requestStream: false,
          responseStream: false,
          requestSerialize: identity,
          requestDeserialize: identity,
          responseSerialize: identity,
          responseDeserialize: identity,
        },
      },
      {
        export: (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
          received.push(call.request);
          callback(null, Buffer.alloc(0)); // an empty ExportTraceServiceResponse
        },
      },
    );
    const port = await new Promise<number>((resolve, reject) => {
      collector.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (error, bound) =>
        error === null ? resolve(bound) : reject(error),
      );
    });
    try {
      const { code, stderr } = await runNode([...PRELOAD, ROUNDTRIP], {
        OTEL_SERVICE_NAME: "telemetry-otlp",
        OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}`,
      });
      expect(stderr).toBe("");
      expect(code).toBe(0);
      const payload = Buffer.concat(received).toString("latin1");
      expect(payload).toContain("telemetry-otlp");
      expect(payload).toContain(ECHO_SPAN);
      expect(payload).not.toContain("TraceService/Export");
    } finally {
      collector.forceShutdown();
    }
  });

  it("flushes spans of a program that just runs out of work", async () => {
    const { code, stdout } = await runNode([...PRELOAD, "test/fixtures/telemetry/natural-exit.ts"], {
      OTEL_TRACES_EXPORTER: "console",
    });
    expect(code).toBe(0);
    expect(parseConsoleSpans(stdout).map((span) => span.name)).toEqual(["natural-exit"]);
  });

  it("stops before the service runs when OTEL_TRACES_SAMPLER_ARG is not a ratio", async () => {
    const { code, stdout, stderr } = await runNode([...PRELOAD, ROUNDTRIP], {
      OTEL_TRACES_EXPORTER: "console",
      OTEL_TRACES_SAMPLER: "traceidratio",
      OTEL_TRACES_SAMPLER_ARG: "abc",
    });
    expect(code).toBe(BAD_CONFIG_EXIT);
    expect(stderr).toContain("OTEL_TRACES_SAMPLER_ARG");
    expect(stderr).toContain('"abc"');
    expect(stdout).not.toContain("FIXTURE");
  });

  it("stops before the service runs when OTEL_TRACES_EXPORTER is unknown", async () => {
    const { code, stderr } = await runNode([...PRELOAD, ROUNDTRIP], { OTEL_TRACES_EXPORTER: "jaeger" });
    expect(code).toBe(BAD_CONFIG_EXIT);
    expect(stderr).toMatch(/OTEL_TRACES_EXPORTER: unsupported exporter "jaeger"/);
  });

  it("bounds shutdownTelemetry when the collector never answers", async () => {
    const { code, stdout } = await runNode(["--import", "tsx", "test/fixtures/telemetry/shutdown-timeout.ts"]);
    expect(code).toBe(0);
    expect(stdout).toContain("FIXTURE warning telemetry shutdown did not finish within 300 ms");
    const elapsed = Number(/FIXTURE shutdown-ms (\d+)/.exec(stdout)?.[1]);
    expect(elapsed).toBeGreaterThanOrEqual(290);
    expect(elapsed).toBeLessThan(2000);
  });
});
