export { BUILTIN_AGENTS, echoAgent, failAgent, flakyAgent, hashAgent, sleepAgent } from "./agents/index.js";
export {
  AgentError, backoffDelay, defineAgent, invalidInput, STARTED_AFTER_MS, toTaskError, Worker,
  type AgentContext, type AgentDefinition, type AgentErrorInit, type AgentHandler, type AgentOptions, type BackoffOptions,
  type WorkerConnector, type WorkerOptions, type WorkerState,
} from "@taskmesh/worker/service";
