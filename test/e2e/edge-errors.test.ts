import { generateKeyPairSync } from "node:crypto";
import { connect } from "node:net";
import { SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ListTasksRequest, TaskServiceService } from "@taskmesh/contracts/gen/taskmesh/coordinator/v1/task_service";
import { EventServiceService } from "@taskmesh/contracts/gen/taskmesh/events/v1/events";
import { GetTaskRequest, LedgerServiceService } from "@taskmesh/contracts/gen/taskmesh/ledger/v1/ledger";
import { Code, createClient, type MeshClient } from "@taskmesh/kit";
import { counterSum, runtimeValue } from "../support/envoy-admin.js";
import { bearer, failure, startUp, until, type UpRun } from "../support/up.js";

const ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo";
const RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo";

/** `google.rpc.Status` as JSON, as the edge's transcoder prints a service's error. */
interface JsonStatus {
  code: number;
  message: string;
  details: Array<{ "@type": string; reason?: string; domain?: string; metadata?: Record<string, string>; retryDelay?: string }>;
}

/** What an HTTP caller reads from an error answer: its status, content type, and the body's code, ErrorInfo and RetryInfo. */
async function errorOf(response: Response) {
  const body = (await response.json()) as JsonStatus;
  const info = body.details.find((d) => d["@type"] === ERROR_INFO);
  return {
    status: response.status, contentType: response.headers.get("content-type"), code: body.code, message: body.message,
    reason: info?.reason, domain: info?.domain, metadata: info?.metadata, retryDelay: body.details.find((d) => d["@type"] === RETRY_INFO)?.retryDelay,
    body,
  };
}

// The errors the edge Envoy answers itself, as a plain HTTP/JSON caller and a
// gRPC caller of a real `taskmesh up` meet them: an HTTP caller gets the same
// JSON `google.rpc.Status` a service's error is transcoded to.
describe("the edge's own errors under up", { timeout: 90_000 }, () => {
  let upRun: UpRun;
  let admin: string;
  let tasks: MeshClient<typeof TaskServiceService>;
  let base: string;
  const get = (path: string, token?: string) => fetch(`${base}${path}`, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  const post = (path: string, body: string, token?: string) => fetch(`${base}${path}`, {
    method: "POST", body, headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
  });

  beforeAll(async () => {
    upRun = await startUp();
    base = `http://${upRun.edge}`;
    admin = await upRun.token();
    tasks = createClient(TaskServiceService, upRun.edge);
  }, 400_000); // waiting for the lock included

  afterAll(async () => {
    tasks?.close();
    await upRun?.down();
  }, 60_000);

  it("no token: 401 with UNAUTHENTICATED AUTH_MISSING_TOKEN, shaped as a service's error; a gRPC caller's refusal is unchanged", async () => {
    const missing = await errorOf(await get("/v1/tasks"));
    expect(missing).toMatchObject({ status: 401, contentType: "application/json", code: Code.UNAUTHENTICATED, reason: "AUTH_MISSING_TOKEN", domain: "taskmesh.dev", metadata: {} });
    // The same keys as an error the coordinator itself answers through the transcoder.
    const fromService = await errorOf(await get("/v1/tasks/00000000-0000-7000-8000-000000000000", admin));
    expect([fromService.status, fromService.reason]).toEqual([404, "RES_TASK_NOT_FOUND"]);
    expect(Object.keys(missing.body).sort()).toEqual(Object.keys(fromService.body).sort());
    expect(Object.keys(missing.body.details[0]!).sort()).toEqual(Object.keys(fromService.body.details[0]!).sort());

    const grpc = await failure(tasks.listTasks(ListTasksRequest.fromPartial({ pageSize: 1 })));
    expect([grpc.code, grpc.reason, grpc.message]).toEqual([Code.UNAUTHENTICATED, "AUTH_MISSING_TOKEN", "Jwt is missing"]);
  });

  it("the workers and the queues over HTTP: GET /v1/workers and /v1/queues with a token, 401 without", async () => {
    const workers = await get("/v1/workers", admin);
    expect(workers.status).toBe(200);
    const listed = (await workers.json()) as { workers: Array<{ info: { workerId: string; maxConcurrency: number; capabilities: Array<{ name: string }> }; state: string }> };
    const connected = listed.workers.filter((w) => w.state === "WORKER_STATE_CONNECTED");
    expect(connected.length).toBeGreaterThanOrEqual(2);
    expect(connected[0]!.info.capabilities.map((c) => c.name)).toContain("echo");
    const queues = await get("/v1/queues", admin);
    expect(queues.status).toBe(200);
    expect(await queues.json()).toMatchObject({ queues: expect.any(Array), readAt: expect.any(String) });
    expect((await errorOf(await get("/v1/queues"))).reason).toBe("AUTH_MISSING_TOKEN");
  });

  it("a malformed, forged, expired or other-audience token: 401 with AUTH_INVALID_TOKEN", async () => {
    const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const now = Math.floor(Date.now() / 1000);
    const sign = (aud: string, exp: number) => new SignJWT({ scope: "admin" }).setProtectedHeader({ alg: "RS256", kid: "e2e-unknown" })
      .setIssuer("taskmesh-identity").setAudience(aud).setSubject("forger").setIssuedAt(exp - 900).setExpirationTime(exp).sign(privateKey);
    const tokens = {
      garbage: "not-a-jwt",
      unknownKey: await sign("taskmesh", now + 600),
      expired: await sign("taskmesh", now - 120),
      // jwt_authn answers 403 for it; the edge says 401 like for every other bad token.
      otherAudience: await sign("someone-else", now + 600),
    };
    for (const [what, token] of Object.entries(tokens)) {
      const e = await errorOf(await get("/v1/tasks", token));
      expect([what, e.status, e.contentType, e.code, e.reason, e.domain]).toEqual([what, 401, "application/json", Code.UNAUTHENTICATED, "AUTH_INVALID_TOKEN", "taskmesh.dev"]);
    }
  });

  it("a body that is not JSON, or a query parameter of the wrong type: 400 INVALID_ARGUMENT with the parser's message", async () => {
    const body = await errorOf(await post("/v1/tasks", '{"capability":', admin));
    expect(body).toMatchObject({ status: 400, contentType: "application/json", code: Code.INVALID_ARGUMENT, reason: "VAL_MALFORMED_REQUEST", domain: "taskmesh.dev" });
    expect(body.message).toContain("Unexpected end of string");
    const query = await errorOf(await get("/v1/tasks?pageSize=many", admin));
    expect(query).toMatchObject({ status: 400, code: Code.INVALID_ARGUMENT, reason: "VAL_MALFORMED_REQUEST" });
    expect(query.message).toContain("page_size");
  });

  it("a path no route takes: 404 UNIMPLEMENTED naming the method and path; a gRPC caller of a method the edge does not expose still gets UNIMPLEMENTED", async () => {
    const unknown = await errorOf(await get("/v1/nothing-here?x=1", admin));
    expect(unknown).toMatchObject({
      status: 404, contentType: "application/json", code: Code.UNIMPLEMENTED, reason: "VAL_UNKNOWN_ROUTE", domain: "taskmesh.dev",
      metadata: { method: "GET", path: "/v1/nothing-here" },
    });
    const ledger = createClient(LedgerServiceService, upRun.edge);
    try {
      const e = await failure(ledger.getTask(GetTaskRequest.fromPartial({ id: "00000000-0000-7000-8000-000000000000" }), { metadata: bearer(admin) }));
      expect([e.code, e.message]).toEqual([Code.UNIMPLEMENTED, "not exposed by the edge\n"]);
    } finally {
      ledger.close();
    }
  });

  it("npx taskmesh grpcurl runs the pinned grpcurl: the README's submit through the edge works as written", async () => {
    const submitted = await upRun.taskmesh("grpcurl", "-plaintext", "-H", `authorization: Bearer ${admin}`, "-d", '{"capability":"echo","input":{"text":"hi"}}',
      upRun.edge, "taskmesh.coordinator.v1.TaskService/SubmitTask");
    expect(submitted.code, submitted.stderr).toBe(0);
    expect((JSON.parse(submitted.stdout) as { task: { capability: string } }).task.capability).toBe("echo");
    const listed = await upRun.taskmesh("grpcurl", "-plaintext", upRun.edge, "list");
    expect(listed.stdout.split("\n")).toContain("taskmesh.coordinator.v1.TaskService");
    // grpcurl's own failures keep its exit code.
    expect((await upRun.taskmesh("grpcurl", "-plaintext", upRun.edge, "no.such.Service/Nothing")).code).not.toBe(0);
  });

  it("over a rate limit: 429 RESOURCE_EXHAUSTED RATE_LIMITED with RetryInfo saying what retry-after says", async () => {
    const method = "/taskmesh.coordinator.v1.TaskService/ListTasks";
    // With no limit configured (as `up` starts) the edge's rate-limit filter is off: it asks the ratelimit service nothing.
    const edgeAdmin = `http://127.0.0.1:${upRun.env.TASKMESH_EDGE_ADMIN_PORT}`;
    const filterEnabled = () => runtimeValue(edgeAdmin, "ratelimit.http_filter_enabled");
    const asked = () => counterSum(edgeAdmin, "^cluster\\.[a-z0-9-]+\\.ratelimit\\.");
    await until("the edge's rate-limit filter to be off", 15_000, async () => ((await filterEnabled()) === "0" ? true : undefined));
    const before = await asked();
    for (let i = 0; i < 3; i++) {
      const response = await get("/v1/tasks?pageSize=1", admin);
      await response.arrayBuffer();
      expect(response.status).toBe(200);
    }
    expect(await asked()).toBe(before);
    const put = await upRun.taskmesh("config", "put", "/ratelimit/limits", JSON.stringify({ "e2e-http": { descriptor: [{ key: "subject" }, { key: "method", value: method }], requests: 1, per: "minute" } }));
    expect(put.code, put.stderr).toBe(0);
    try {
      // The limit applies once the ratelimit service has it; from then on the second call in the minute is refused.
      const refused = await until("a refusal", 15_000, async () => {
        const response = await get("/v1/tasks?pageSize=1", admin);
        return response.status === 429 ? response : (await response.arrayBuffer(), undefined);
      });
      const retryAfter = Number(refused.headers.get("retry-after"));
      expect(retryAfter).toBeGreaterThanOrEqual(1);
      expect(retryAfter).toBeLessThanOrEqual(60);
      expect(await errorOf(refused)).toMatchObject({
        status: 429, contentType: "application/json", code: Code.RESOURCE_EXHAUSTED, reason: "RATE_LIMITED", domain: "taskmesh.dev", retryDelay: `${retryAfter}s`,
      });
      expect(await filterEnabled()).toBe("100");
      expect(await asked()).toBeGreaterThan(before);
    } finally {
      await upRun.taskmesh("config", "put", "/ratelimit/limits", "{}");
    }
  });

  it("over an edge limit: the same 429 answer, counted by the edge itself without asking the ratelimit service", async () => {
    const method = "/taskmesh.coordinator.v1.TaskService/ListTasks";
    const edgeAdmin = `http://127.0.0.1:${upRun.env.TASKMESH_EDGE_ADMIN_PORT}`;
    const asked = () => counterSum(edgeAdmin, "^cluster\\.[a-z0-9-]+\\.ratelimit\\.");
    const limited = () => counterSum(edgeAdmin, "^edge_limits\\.http_local_rate_limit\\.rate_limited$");
    const put = await upRun.taskmesh("config", "put", "/ratelimit/limits", JSON.stringify({
      "e2e-edge": { descriptor: [{ key: "subject" }, { key: "method", value: method }], requests: 1, per: "minute", scope: "edge" },
    }));
    expect(put.code, put.stderr).toBe(0);
    try {
      await until("the edge's rate-limit filter to be off", 15_000, async () => ((await runtimeValue(edgeAdmin, "ratelimit.http_filter_enabled")) === "0" ? true : undefined));
      const before = await asked();
      const refused = await until("a refusal", 15_000, async () => {
        const response = await get("/v1/tasks?pageSize=1", admin);
        return response.status === 429 ? response : (await response.arrayBuffer(), undefined);
      });
      const retryAfter = Number(refused.headers.get("retry-after"));
      expect(retryAfter).toBeGreaterThanOrEqual(1);
      expect(retryAfter).toBeLessThanOrEqual(60);
      expect(await errorOf(refused)).toMatchObject({
        status: 429, contentType: "application/json", code: Code.RESOURCE_EXHAUSTED, reason: "RATE_LIMITED", domain: "taskmesh.dev", retryDelay: `${retryAfter}s`,
      });
      expect(await limited()).toBeGreaterThan(0);
      expect(await asked()).toBe(before);
    } finally {
      await upRun.taskmesh("config", "put", "/ratelimit/limits", "{}");
    }
  });

  it("the service behind the edge unreachable: 503 UNAVAILABLE with RetryInfo; a gRPC caller gets UNAVAILABLE", async () => {
    const status = JSON.parse((await upRun.taskmesh("status", "--json")).stdout) as { supervisorPid: number; processes: Array<{ name: string; pid?: number; ports: Record<string, number> }> };
    const sidecar = status.processes.find((p) => p.name === "events-0-sidecar")!;
    /** Whether anything listens on the sidecar's inbound port (a killed process may linger as a zombie; its sockets do not). */
    const listening = () => new Promise<boolean>((resolve) => {
      const socket = connect(sidecar.ports.inbound!, "127.0.0.1");
      socket.once("connect", () => (socket.destroy(), resolve(true)));
      socket.once("error", () => resolve(false));
    });
    const events = createClient(EventServiceService, upRun.edge);
    // Paused, the supervisor cannot restart the sidecar (it would in 0.5 s) while the calls run.
    process.kill(status.supervisorPid, "SIGSTOP");
    try {
      process.kill(sidecar.pid!, "SIGKILL");
      await until("the sidecar to be gone", 5000, async () => ((await listening()) ? undefined : true));
      const down = await errorOf(await post("/v1/events", "{}", admin));
      expect(down).toMatchObject({
        status: 503, contentType: "application/json", code: Code.UNAVAILABLE, reason: "EXT_DEPENDENCY_UNAVAILABLE", domain: "taskmesh.dev",
        metadata: { service: "events" }, retryDelay: "1s",
      });
      const grpc = await failure(events.publish({ event: undefined }, { metadata: bearer(admin) }));
      expect(grpc.code).toBe(Code.UNAVAILABLE);
    } finally {
      process.kill(status.supervisorPid, "SIGCONT");
      events.close();
    }
    // Back once the sidecar is restarted: the service answers again (here: the empty event is invalid).
    await until("events to answer through the edge again", 30_000, async () => {
      const response = await post("/v1/events", "{}", admin);
      await response.arrayBuffer();
      return response.status === 400 ? true : undefined;
    });
  });
});
