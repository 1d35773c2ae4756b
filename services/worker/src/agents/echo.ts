import { defineAgent } from "@taskmesh/worker";

/** `echo`: the output is the input. */
export const echoAgent = defineAgent({
  capability: "echo",
  description: "returns its input",
  handler: (input) => ({ ...input }),
});
