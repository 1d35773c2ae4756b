/**
 * An agent that reports its progress: `word-stats` counts the words of
 * `input.text` a chunk of lines at a time, reporting how far it is after
 * each chunk (`WatchTask`, `taskmesh task watch`, and the progress events on
 * Kafka show it), and stops at once when the task is cancelled.
 *
 *   npx taskmesh worker examples/agents/word-stats.ts
 *   npx taskmesh task submit word-stats '{"text":"a b\nc"}' --wait
 */
import { setImmediate as yieldTurn } from "node:timers/promises";
import { AgentError, defineAgent, invalidInput, type AgentContext } from "@taskmesh/worker";

const LINES_PER_CHUNK = 1_000;

export default defineAgent({
  capability: "word-stats",
  description: "counts the words of input.text, reporting progress",
  async handler(input: Record<string, unknown>, ctx: AgentContext) {
    const text = input["text"];
    if (typeof text !== "string") throw invalidInput("text must be a string", { field: "text" });
    const lines = text.split("\n");
    const counts = new Map<string, number>();
    for (let start = 0; start < lines.length; start += LINES_PER_CHUNK) {
      if (ctx.signal.aborted) throw new AgentError("cancelled", { reason: "BIZ_ABORTED", retryable: false });
      for (const line of lines.slice(start, start + LINES_PER_CHUNK)) {
        for (const word of line.toLowerCase().match(/[\p{L}\p{N}']+/gu) ?? []) counts.set(word, (counts.get(word) ?? 0) + 1);
      }
      const done = Math.min(start + LINES_PER_CHUNK, lines.length);
      ctx.progress(Math.round((done * 100) / lines.length), `${done} of ${lines.length} lines`);
      await yieldTurn(); // lets the worker send the report (and hear a cancel) between chunks
    }
    const top = [...counts].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])).slice(0, 10);
    return { lines: lines.length, words: [...counts.values()].reduce((a, b) => a + b, 0), distinct: counts.size, top: Object.fromEntries(top) };
  },
});
