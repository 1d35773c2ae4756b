import { AgentError, defineAgent, invalidInput } from "@taskmesh/worker";

/** `flaky`: `{"failTimes":N}` fails retryably while the attempt is ≤ N, then succeeds with `{"attempt":n}`. */
export const flakyAgent = defineAgent({
  capability: "flaky",
  description: "fails input.failTimes attempts, then succeeds",
  handler(input, ctx) {
    const failTimes = input["failTimes"];
    if (typeof failTimes !== "number" || !Number.isInteger(failTimes) || failTimes < 0) {
      throw invalidInput("failTimes must be a non-negative whole number", { field: "failTimes" });
    }
    if (ctx.attempt <= failTimes) {
      throw new AgentError(`flaky: attempt ${ctx.attempt} of ${failTimes} planned failures`, { reason: "BIZ_FLAKY_FAILURE", retryable: true });
    }
    return { attempt: ctx.attempt, failedTimes: failTimes };
  },
});
