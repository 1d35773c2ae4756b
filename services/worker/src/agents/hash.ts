import { createHash } from "node:crypto";
import { defineAgent, invalidInput } from "@taskmesh/worker";

/** `hash`: `{"text":..}` → `{"sha256": lower-case hex of its UTF-8 bytes}`. */
export const hashAgent = defineAgent({
  capability: "hash",
  description: "sha256 (hex) of input.text",
  handler(input) {
    const text = input["text"];
    if (typeof text !== "string") throw invalidInput("text must be a string", { field: "text" });
    return { sha256: createHash("sha256").update(text, "utf8").digest("hex") };
  },
});
