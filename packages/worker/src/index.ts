/**
 * @taskmesh/worker: agents of your own. Define each with {@link defineAgent}
 * and export them (one, or a list) as your module's default export; run
 * them with `npx taskmesh worker ./my-agents.ts`. See this package's
 * README.md.
 */
export {
  AgentError, defineAgent, invalidInput,
  type AgentContext, type AgentDefinition, type AgentErrorInit, type AgentHandler, type AgentOptions,
} from "./agent.js";
export { ChildTaskError, type ChildHandle, type SpawnOptions } from "./children.js";
export { Worker, type MeshTls, type WorkerConfig } from "./worker.js";
