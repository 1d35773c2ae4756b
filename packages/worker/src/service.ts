/**
 * The runtime the mesh's own worker service (services/worker) runs its
 * agents on: the same one {@link Worker} in `./worker.ts` runs a program's
 * agents on. Not part of the SDK's API (`@taskmesh/worker`); it may change
 * with the service.
 */
export {
  AgentError, defineAgent, invalidInput, toTaskError,
  type AgentContext, type AgentDefinition, type AgentErrorInit, type AgentHandler, type AgentOptions,
} from "./agent.js";
export { AgentModuleError, loadAgentModule } from "./agent-module.js";
export { backoffDelay, type BackoffOptions } from "./backoff.js";
export { runAttempt, STARTED_AFTER_MS } from "./run-attempt.js";
export { Worker } from "./runtime.js";
export { type WorkerConnector, type WorkerOptions } from "./worker-options.js";
export { type WorkerState } from "./worker-state.js";
