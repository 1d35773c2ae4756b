import { context, trace, type Tracer } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { TracerProvider } from "@opentelemetry/sdk-trace";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger, type LoggerOptions } from "@taskmesh/kit/log";

/** A pino destination that keeps each line, parsed, in memory. */
function memoryLogger(options: Omit<LoggerOptions, "destination"> = {}) {
  const raw: string[] = [];
  const logger = createLogger({
    service: "kit-test",
    instance: "kit-test-1",
    ...options,
    destination: { write: (line: string) => void raw.push(line) },
  });
  const lines = (): Record<string, unknown>[] => raw.map((line) => JSON.parse(line) as Record<string, unknown>);
  return { logger, raw, lines };
}

describe("createLogger", () => {
  let tracer: Tracer;
  let provider: TracerProvider;
  const contextManager = new AsyncLocalStorageContextManager();

  beforeAll(() => {
    context.setGlobalContextManager(contextManager.enable());
    // No processor: nothing is exported, the test only needs real, sampled span ids.
    provider = new TracerProvider();
    tracer = provider.getTracer("log-test");
  });

  afterAll(async () => {
    await provider.shutdown();
    context.disable();
  });

  it("writes one JSON line with service, instance, level label and ISO time", () => {
    const { logger, raw, lines } = memoryLogger();
    logger.info({ taskId: "t-1" }, "task accepted");

    expect(raw).toHaveLength(1);
    expect(raw[0]?.endsWith("\n")).toBe(true);
    const [line] = lines();
    expect(line).toMatchObject({
      service: "kit-test",
      instance: "kit-test-1",
      level: "info",
      msg: "task accepted",
      taskId: "t-1",
    });
    expect(line?.["time"]).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(line).not.toHaveProperty("pid");
    expect(line).not.toHaveProperty("hostname");
  });

  it("drops lines below the configured level", () => {
    const { logger, lines } = memoryLogger({ level: "warn" });
    logger.info("not written");
    logger.error("written");
    expect(lines().map((line) => line["msg"])).toEqual(["written"]);
    expect(lines()[0]?.["level"]).toBe("error");
  });

  it("adds trace_id and span_id of the active span, also after an await", async () => {
    const { logger, lines } = memoryLogger();
    const ids = await tracer.startActiveSpan("handle-task", async (span) => {
      logger.info("before await");
      await sleep(1);
      logger.info("after await");
      span.end();
      return span.spanContext();
    });

    expect(ids.traceId).toMatch(/^[0-9a-f]{32}$/);
    for (const line of lines()) {
      expect(line).toMatchObject({ trace_id: ids.traceId, span_id: ids.spanId, trace_flags: "01" });
    }
    expect(lines()).toHaveLength(2);
  });

  it("follows the innermost active span", () => {
    const { logger, lines } = memoryLogger();
    tracer.startActiveSpan("outer", (outer) => {
      tracer.startActiveSpan("inner", (inner) => {
        logger.info("inside");
        expect(lines()[0]).toMatchObject({
          trace_id: outer.spanContext().traceId,
          span_id: inner.spanContext().spanId,
        });
        inner.end();
      });
      outer.end();
    });
  });

  it("has no trace fields when no span is active", () => {
    const { logger, lines } = memoryLogger();
    const span = tracer.startSpan("not-active");
    logger.info("outside");
    span.end();

    const [line] = lines();
    expect(line).not.toHaveProperty("trace_id");
    expect(line).not.toHaveProperty("span_id");
    expect(line).not.toHaveProperty("trace_flags");
  });

  it("has no trace fields for an invalid span context", () => {
    const { logger, lines } = memoryLogger();
    const invalid = trace.wrapSpanContext({ traceId: "0".repeat(32), spanId: "0".repeat(16), traceFlags: 0 });
    context.with(trace.setSpan(context.active(), invalid), () => logger.info("invalid"));
    expect(lines()[0]).not.toHaveProperty("trace_id");
  });

  it("redacts secrets at the top level and one object down", () => {
    const { logger, raw, lines } = memoryLogger();
    logger.info(
      {
        authorization: "Bearer abc.def.ghi",
        password: "hunter2",
        request: { token: "tok-123", apiKey: "key-456", refreshToken: "rt-789", secret: "s3cr3t" },
        user: "ada",
      },
      "login",
    );

    const [line] = lines();
    expect(line).toMatchObject({
      authorization: "[redacted]",
      password: "[redacted]",
      request: {
        token: "[redacted]",
        apiKey: "[redacted]",
        refreshToken: "[redacted]",
        secret: "[redacted]",
      },
      user: "ada",
    });
    for (const secret of ["abc.def.ghi", "hunter2", "tok-123", "key-456", "rt-789", "s3cr3t"]) {
      expect(raw[0]).not.toContain(secret);
    }
  });

  it("redacts extra paths given by the caller", () => {
    const { logger, lines } = memoryLogger({ redact: ["db.connectionString"] });
    logger.info({ db: { connectionString: "postgres://u:p@h/db", pool: 4 } }, "connected");
    expect(lines()[0]).toMatchObject({ db: { connectionString: "[redacted]", pool: 4 } });
  });

  it("redacts fields bound on a child logger", () => {
    const { logger, lines } = memoryLogger();
    logger.child({ password: "from-child" }).info("child line");
    expect(lines()[0]).toMatchObject({ password: "[redacted]", service: "kit-test" });
  });

  it("logs an error's type, message, code and cause, never the objects it carries", () => {
    const { logger, raw, lines } = memoryLogger();
    const error = Object.assign(new Error("terminating connection"), {
      code: "57P01",
      client: { connectionParameters: { password: "hunter2", user: "postgres" } },
      cause: new Error("socket closed"),
    });
    logger.warn({ err: error }, "connection lost");
    expect(lines()[0]).toMatchObject({
      err: { type: "Error", message: "terminating connection", code: "57P01", cause: { type: "Error", message: "socket closed" } },
    });
    expect(raw.join("")).not.toContain("hunter2");
    expect(raw.join("")).not.toContain("connectionParameters");
  });
});
