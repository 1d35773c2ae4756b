/**
 * Picking one trace's lines out of the processes' logs (`taskmesh logs
 * --trace`): the services write JSON lines with `trace_id`; other processes
 * (Envoy, Kafka, ...) write text that may name the id.
 */

const TRACE_ID = /^[0-9a-f]{32}$/;
const TRACEPARENT = /^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$/;

/** The trace id in `text`: 32 hex digits, or the trace id of a W3C `traceparent`; undefined when it is neither (or all zeros). */
export function parseTraceId(text: string): string | undefined {
  const t = text.trim().toLowerCase();
  const id = TRACE_ID.test(t) ? t : TRACEPARENT.exec(t)?.[1];
  return id === undefined || /^0+$/.test(id) ? undefined : id;
}

/**
 * Whether a log line belongs to trace `traceId` (lower-case hex): a JSON
 * line by its `trace_id` field, any other line when it contains the id.
 */
export function lineHasTrace(line: string, traceId: string): boolean {
  if (line.startsWith("{")) {
    try {
      const record = JSON.parse(line) as Record<string, unknown>;
      if (typeof record.trace_id === "string") return record.trace_id.toLowerCase() === traceId;
    } catch {
      // not JSON after all: look at its text
    }
  }
  return line.toLowerCase().includes(traceId);
}

/** The `time` of a JSON log line (ISO 8601, which sorts as text), or undefined. */
export function lineTime(line: string): string | undefined {
  if (!line.startsWith("{")) return undefined;
  try {
    const time = (JSON.parse(line) as Record<string, unknown>).time;
    return typeof time === "string" ? time : undefined;
  } catch {
    return undefined;
  }
}

/** Splits a stream of chunks into whole lines, keeping a trailing partial line until its newline arrives. */
export class LineSplitter {
  private rest = "";

  /** The whole lines completed by `chunk`, without their newlines. */
  push(chunk: string): string[] {
    const lines = (this.rest + chunk).split("\n");
    this.rest = lines.pop() ?? "";
    return lines;
  }

  /** What is left without a newline (the end of a file that is not being followed). */
  flush(): string[] {
    const rest = this.rest;
    this.rest = "";
    return rest === "" ? [] : [rest];
  }
}

/** One matching line of a process's log. */
export interface TraceLine {
  readonly process: string;
  readonly line: string;
  /** Its own time, or the last one seen before it in the same log. */
  readonly time: string;
}

/**
 * The lines of trace `traceId` in several logs (`process` → text), in time
 * order across processes; a line without a time keeps its place after the
 * line before it in its own log.
 */
export function traceLines(logs: ReadonlyMap<string, string>, traceId: string): TraceLine[] {
  const out: TraceLine[] = [];
  for (const [process, text] of logs) {
    let time = "";
    for (const line of text.split("\n")) {
      time = lineTime(line) ?? time;
      if (line !== "" && lineHasTrace(line, traceId)) out.push({ process, line, time });
    }
  }
  // Array.prototype.sort is stable: equal times keep their order within a log.
  return out.sort((a, b) => (a.time < b.time ? -1 : a.time > b.time ? 1 : 0));
}
