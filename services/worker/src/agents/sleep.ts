import { setTimeout as delay } from "node:timers/promises";
import { AgentError, defineAgent, invalidInput } from "@taskmesh/worker";

/** The longest sleep taken, in ms (one day). */
const MAX_SLEEP_MS = 86_400_000;

/** `sleep`: waits `{"ms":N}` milliseconds, stopping at once when its signal aborts; outputs `{"sleptMs":N}`. */
export const sleepAgent = defineAgent({
  capability: "sleep",
  description: "waits input.ms milliseconds",
  async handler(input, ctx) {
    const ms = input["ms"];
    if (typeof ms !== "number" || !Number.isFinite(ms) || ms < 0 || ms > MAX_SLEEP_MS) {
      throw invalidInput(`ms must be a number of milliseconds, 0..${MAX_SLEEP_MS}`, { field: "ms" });
    }
    ctx.progress(0, `sleeping ${ms}ms`);
    try {
      await delay(ms, undefined, { signal: ctx.signal });
    } catch (error) {
      if (ctx.signal.aborted) throw new AgentError("sleep aborted", { reason: "BIZ_ABORTED", cause: ctx.signal.reason });
      throw error;
    }
    ctx.progress(100, "done");
    return { sleptMs: ms };
  },
});
