// The console's one way to the API: the edge's HTTP/JSON routes (transcoded
// from the same protos as every client), on this origin, with the signed-in
// user's access token. Answers are read with the generated messages' own
// JSON readers (`fromJSON`), so what the page shows is typed as the
// contracts say.

import { Task, TaskTransition, Workflow } from "@taskmesh/contracts/gen/taskmesh/task/v1/task";
import { WorkerStatus } from "@taskmesh/contracts/gen/taskmesh/worker/v1/worker";

/** An error the API answered: the gRPC status's message and ErrorInfo reason, and the HTTP status. */
export class ApiError extends Error {
  constructor(message: string, readonly reason: string, readonly status: number) {
    super(message);
  }
}

/** What the console keeps for the signed-in user (this tab only). */
interface Session {
  /** An API key, exchanged for access tokens as they expire; absent when an access token was given. */
  readonly apiKey?: string;
  token: string;
  readonly subject: string;
}

const KEY = "taskmesh.console.session";

function load(): Session | undefined {
  const raw = sessionStorage.getItem(KEY);
  return raw ? (JSON.parse(raw) as Session) : undefined;
}

let session = load();

/** The signed-in subject, or undefined. */
export function signedIn(): string | undefined {
  return session?.subject;
}

export function signOut(): void {
  session = undefined;
  sessionStorage.removeItem(KEY);
}

/** The subject a JWT names (its payload is not verified here: the edge verifies every call). */
function subjectOf(token: string): string {
  try {
    const payload = JSON.parse(atob(token.split(".")[1]!.replace(/-/g, "+").replace(/_/g, "/"))) as { sub?: string };
    return payload.sub ?? "";
  } catch {
    throw new ApiError("that is neither an API key nor an access token", "VAL_INVALID_ARGUMENT", 400);
  }
}

async function issue(apiKey: string): Promise<string> {
  const answer = await call<{ accessToken: string }>("POST", "/v1/tokens", { apiKey }, false);
  return answer.accessToken;
}

/**
 * Signs in with an API key (exchanged for an access token at `POST
 * /v1/tokens`, again whenever one expires) or an access token as it is
 * (e.g. `npx taskmesh token`); checks it with one call.
 */
export async function signIn(secret: string): Promise<string> {
  const value = secret.trim().replace(/^Bearer\s+/i, "");
  const isToken = value.split(".").length === 3;
  const token = isToken ? value : await issue(value);
  const next: Session = { ...(isToken ? {} : { apiKey: value }), token, subject: subjectOf(token) };
  session = next;
  try {
    await call("GET", "/v1/queues");
  } catch (error) {
    signOut();
    throw error;
  }
  sessionStorage.setItem(KEY, JSON.stringify(next));
  return next.subject;
}

/** Calls a route; a refused token is exchanged once more when signed in with an API key. */
async function call<T>(method: "GET" | "POST", path: string, body?: unknown, authorized = true): Promise<T> {
  const send = () => fetch(path, {
    method,
    headers: { ...(body === undefined ? {} : { "content-type": "application/json" }), ...(authorized && session ? { authorization: `Bearer ${session.token}` } : {}) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  let response = await send();
  if (response.status === 401 && authorized && session?.apiKey) {
    session.token = await issue(session.apiKey);
    sessionStorage.setItem(KEY, JSON.stringify(session));
    response = await send();
  }
  const text = await response.text();
  const json = text === "" ? {} : (JSON.parse(text) as Record<string, unknown>);
  if (!response.ok) {
    const details = (json.details as Array<{ reason?: string }> | undefined) ?? [];
    throw new ApiError(String(json.message ?? response.statusText), details.find((d) => d.reason)?.reason ?? "", response.status);
  }
  return json as T;
}

/** The states a task can be in, as the filters and badges name them. */
export const STATES = ["WAITING", "PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT"] as const;

export async function listTasks(filter: { state: string; capability: string; pageSize: number }): Promise<Task[]> {
  const query = new URLSearchParams({ pageSize: String(filter.pageSize) });
  if (filter.state) query.append("states", `TASK_STATE_${filter.state}`);
  if (filter.capability) query.set("capability", filter.capability);
  const answer = await call<{ tasks?: unknown[] }>("GET", `/v1/tasks?${query}`);
  return (answer.tasks ?? []).map((t) => Task.fromJSON(t));
}

export async function getTask(id: string): Promise<Task> {
  return Task.fromJSON((await call<{ task: unknown }>("GET", `/v1/tasks/${encodeURIComponent(id)}`)).task);
}

export async function getHistory(id: string): Promise<TaskTransition[]> {
  const out: TaskTransition[] = [];
  let pageToken = "";
  do {
    const page = await call<{ transitions?: unknown[]; nextPageToken?: string }>("GET", `/v1/tasks/${encodeURIComponent(id)}/history?pageSize=1000&pageToken=${encodeURIComponent(pageToken)}`);
    out.push(...(page.transitions ?? []).map((t) => TaskTransition.fromJSON(t)));
    pageToken = page.nextPageToken ?? "";
  } while (pageToken !== "");
  return out;
}

export async function submitTask(request: { capability: string; input: Record<string, unknown>; priority: number; maxAttempts: number }): Promise<Task> {
  return Task.fromJSON((await call<{ task: unknown }>("POST", "/v1/tasks", request)).task);
}

export async function getWorkflow(id: string): Promise<Workflow> {
  return Workflow.fromJSON((await call<{ workflow: unknown }>("GET", `/v1/workflows/${encodeURIComponent(id)}`)).workflow);
}

export async function cancelWorkflow(id: string, reason: string): Promise<Workflow> {
  return Workflow.fromJSON((await call<{ workflow: unknown }>("POST", `/v1/workflows/${encodeURIComponent(id)}:cancel`, { reason })).workflow);
}

export async function cancelTask(id: string, reason: string): Promise<Task> {
  return Task.fromJSON((await call<{ task: unknown }>("POST", `/v1/tasks/${encodeURIComponent(id)}:cancel`, { reason })).task);
}

export async function listWorkers(): Promise<WorkerStatus[]> {
  return ((await call<{ workers?: unknown[] }>("GET", "/v1/workers")).workers ?? []).map((w) => WorkerStatus.fromJSON(w));
}

/** A protobuf JSON Duration (`"1.500s"`) in ms; 0 when absent. */
export function durationMs(value: string | undefined): number {
  const seconds = value ? Number.parseFloat(value) : 0;
  return Number.isFinite(seconds) ? seconds * 1000 : 0;
}

/** One capability's queue (ClusterService's QueueStats). */
export interface Queue {
  readonly capability: string;
  readonly pending: number;
  readonly running: number;
  readonly oldestPendingMs: number;
}

export async function listQueues(): Promise<Queue[]> {
  const answer = await call<{ queues?: Array<{ capability: string; pending?: number; running?: number; oldestPendingAge?: string }> }>("GET", "/v1/queues");
  return (answer.queues ?? []).map((q) => ({ capability: q.capability, pending: q.pending ?? 0, running: q.running ?? 0, oldestPendingMs: durationMs(q.oldestPendingAge) }));
}

/** The page's settings from the edge: where the Jaeger UI is. */
export async function consoleConfig(): Promise<{ jaegerUrl: string }> {
  const response = await fetch("/ui/config.json");
  return response.ok ? ((await response.json()) as { jaegerUrl: string }) : { jaegerUrl: "" };
}
