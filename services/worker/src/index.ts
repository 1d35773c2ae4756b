export { AgentError, defineAgent, invalidInput, toTaskError, type AgentContext, type AgentDefinition, type AgentErrorInit, type AgentHandler, type AgentOptions } from "./agent.js";
export { BUILTIN_AGENTS, echoAgent, failAgent, flakyAgent, hashAgent, sleepAgent } from "./agents/index.js";
export { backoffDelay, type BackoffOptions } from "./backoff.js";
export { Worker } from "./runtime.js";
export { type WorkerConnector, type WorkerOptions } from "./worker-options.js";
export { type WorkerState } from "./worker-state.js";
export { STARTED_AFTER_MS } from "./run-attempt.js";
