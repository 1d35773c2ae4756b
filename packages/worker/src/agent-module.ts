import { existsSync } from "node:fs";
import { registerHooks } from "node:module";
import { resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { isAgent, type AgentDefinition } from "./agent.js";

/** The SDK's entry in this tree (compiled beside this file, or the source when run from it). */
function sdkEntry(): string {
  const compiled = new URL("./index.js", import.meta.url);
  return existsSync(fileURLToPath(compiled)) ? compiled.href : new URL("./index.ts", import.meta.url).href;
}

let hooked = false;

/** Files this process loads resolve `@taskmesh/worker` to this tree's SDK: an agent module needs no install of its own. */
function resolveSdk(): void {
  if (hooked) return;
  hooked = true;
  const entry = sdkEntry();
  registerHooks({
    resolve(specifier, context, next) {
      return specifier === "@taskmesh/worker" ? { url: entry, shortCircuit: true } : next(specifier, context);
    },
  });
}

/** A module that cannot be run as the worker's agents, and why. */
export class AgentModuleError extends Error {
  override readonly name = "AgentModuleError";
}

const SHAPE = "its default export must be an agent made with defineAgent from @taskmesh/worker, or a list of them";

/**
 * Loads the agents a module offers (`taskmesh worker ./my-agents.ts`): its
 * default export, an agent made with `defineAgent` or a list of them, each
 * capability once. TypeScript runs as it is (Node strips the types);
 * `@taskmesh/worker` resolves to this tree's SDK. Throws an
 * {@link AgentModuleError} saying what is wrong otherwise.
 */
export async function loadAgentModule(path: string): Promise<AgentDefinition[]> {
  const file = resolve(path);
  if (!existsSync(file)) throw new AgentModuleError(`agent module ${file} does not exist`);
  resolveSdk();
  let loaded: { default?: unknown };
  try {
    loaded = (await import(pathToFileURL(file).href)) as { default?: unknown };
  } catch (error) {
    throw new AgentModuleError(`agent module ${file} failed to load: ${(error as Error).message}`, { cause: error });
  }
  const exported = loaded.default;
  const agents = Array.isArray(exported) ? exported : [exported];
  if (exported === undefined) throw new AgentModuleError(`agent module ${file} has no default export: ${SHAPE}`);
  if (agents.length === 0) throw new AgentModuleError(`agent module ${file} exports an empty list: ${SHAPE}`);
  const bad = agents.findIndex((a) => !isAgent(a));
  if (bad >= 0) throw new AgentModuleError(`agent module ${file}: ${Array.isArray(exported) ? `item ${bad} of its default export` : "its default export"} is not an agent: ${SHAPE}`);
  const seen = new Set<string>();
  for (const agent of agents as AgentDefinition[]) {
    if (seen.has(agent.capability)) throw new AgentModuleError(`agent module ${file} defines capability ${agent.capability} twice`);
    seen.add(agent.capability);
  }
  return agents as AgentDefinition[];
}
