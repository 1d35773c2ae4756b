import { AgentError, defineAgent, invalidInput } from "@taskmesh/worker";

/** `fail`: always fails, not retryably, with `{"message":..}` (default "failed as asked"). */
export const failAgent = defineAgent({
  capability: "fail",
  description: "always fails with input.message",
  handler(input) {
    const message = input["message"] ?? "failed as asked";
    if (typeof message !== "string") throw invalidInput("message must be a string", { field: "message" });
    throw new AgentError(message, { reason: "BIZ_HANDLER_FAILED", retryable: false });
  },
});
