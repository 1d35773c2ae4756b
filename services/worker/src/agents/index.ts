import type { AgentDefinition } from "@taskmesh/worker";
import { echoAgent } from "./echo.js";
import { failAgent } from "./fail.js";
import { flakyAgent } from "./flaky.js";
import { hashAgent } from "./hash.js";
import { sleepAgent } from "./sleep.js";

export { echoAgent, failAgent, flakyAgent, hashAgent, sleepAgent };

/** Every built-in agent, by capability. */
export const BUILTIN_AGENTS: ReadonlyMap<string, AgentDefinition> = new Map(
  [echoAgent, sleepAgent, hashAgent, failAgent, flakyAgent].map((a) => [a.capability, a]));
