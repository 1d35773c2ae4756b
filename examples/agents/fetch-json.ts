/**
 * An agent that calls an HTTP API: `fetch-json` GETs `input.url` and
 * answers `{ status, body }`. A 5xx answer, a 429 or a network error is
 * tried again within the attempt (three tries, backoff 200 ms, 400 ms,
 * honouring Retry-After up to 5 s); what is still failing then fails the
 * attempt as retryable `EXT_UPSTREAM_UNAVAILABLE`, so taskmesh retries the
 * task with its own backoff. A 4xx other than 429 is the caller's mistake:
 * `EXT_UPSTREAM_REJECTED`, not retried. Cancelling the task (or its
 * timeout) aborts the request in flight and any wait between tries.
 *
 *   npx taskmesh worker examples/agents/fetch-json.ts
 *   npx taskmesh task submit fetch-json '{"url":"https://example.com/data.json"}' --wait
 */
import { setTimeout as sleep } from "node:timers/promises";
import { AgentError, defineAgent, invalidInput, type AgentContext } from "@taskmesh/worker";

const TRIES = 3;
const MAX_RETRY_AFTER_MS = 5_000;

/** How long to wait before try `n` (1-based) after `response`: its Retry-After when it gives one, else 200 ms doubling. */
function backoffMs(n: number, response?: Response): number {
  const retryAfter = Number(response?.headers.get("retry-after"));
  return Number.isFinite(retryAfter) && retryAfter >= 0 ? Math.min(retryAfter * 1000, MAX_RETRY_AFTER_MS) : 200 * 2 ** (n - 1);
}

export default defineAgent({
  capability: "fetch-json",
  description: "GETs input.url and answers its status and JSON body, retrying 5xx and 429",
  concurrency: 16,
  async handler(input: Record<string, unknown>, ctx: AgentContext) {
    const url = input["url"];
    if (typeof url !== "string" || !/^https?:\/\//.test(url)) throw invalidInput("url must be an http(s) URL", { field: "url" });
    let last = "";
    for (let n = 1; n <= TRIES; n++) {
      let response: Response | undefined;
      try {
        response = await fetch(url, { signal: ctx.signal, headers: { accept: "application/json" } });
      } catch (error) {
        if (ctx.signal.aborted) throw new AgentError("cancelled while calling the API", { reason: "BIZ_ABORTED", retryable: false, cause: error });
        last = (error as Error).message;
      }
      if (response?.ok) return { status: response.status, body: (await response.json()) as unknown };
      if (response && response.status < 500 && response.status !== 429) {
        throw new AgentError(`${url} answered ${response.status}`, { reason: "EXT_UPSTREAM_REJECTED", retryable: false, details: { status: response.status } });
      }
      if (response) last = `answered ${response.status}`;
      ctx.log.warn({ url, try: n, problem: last }, "the API failed; trying again");
      if (n < TRIES) await sleep(backoffMs(n, response), undefined, { signal: ctx.signal }).catch(() => undefined);
      if (ctx.signal.aborted) throw new AgentError("cancelled while waiting to try again", { reason: "BIZ_ABORTED", retryable: false });
    }
    throw new AgentError(`${url} ${last} ${TRIES} times`, { reason: "EXT_UPSTREAM_UNAVAILABLE", retryable: true });
  },
});
