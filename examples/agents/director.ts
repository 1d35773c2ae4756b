// A director agent: splits a text into parts (its paragraphs), hands each
// part to a child task of the `summarize` agent, and joins their answers.
// While its children run, the director's task waits holding no worker slot;
// it runs again once they have all ended and finds each child (by its step
// name) with its result. Run it with `npx taskmesh worker examples/agents/director.ts`.
import { defineAgent, invalidInput } from "@taskmesh/worker";

/** Summarizes one part: its first sentence and how many words it has (where a model call would go). */
export const summarize = defineAgent({
  capability: "summarize",
  description: "the first sentence and the word count of a text",
  handler: (input: Record<string, unknown>) => {
    const text = String(input.text ?? "").trim();
    if (text === "") throw invalidInput("text is empty");
    const first = text.split(/(?<=[.!?])\s+/)[0] ?? text;
    return { summary: first, words: text.split(/\s+/).length };
  },
});

/** Fans a text out to one `summarize` child per paragraph, and joins the summaries in order. */
export const director = defineAgent({
  capability: "director",
  description: "summarizes a text paragraph by paragraph, one child task each",
  handler: async (input: Record<string, unknown>, ctx) => {
    const parts = String(input.text ?? "").split(/\n\s*\n/).map((p) => p.trim()).filter((p) => p !== "");
    if (parts.length === 0) throw invalidInput("text has no paragraphs");
    // Each child keyed by its step: the run after the wait finds the same children, ended.
    const children = parts.map((text, i) => ctx.spawn("summarize", { text }, { step: `part-${i}` }));
    const summaries = await ctx.all(children);
    return {
      parts: parts.length,
      words: summaries.reduce((sum, s) => sum + Number(s.words), 0),
      summary: summaries.map((s) => String(s.summary)).join(" "),
    };
  },
});

export default [director, summarize];
