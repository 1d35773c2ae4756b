/** Where a command prints: stdout and stderr lines (tests pass their own). */
export interface Io {
  out(line: string): void;
  err(line: string): void;
}

/** The process's stdout and stderr. */
export const stdio: Io = { out: (line) => console.log(line), err: (line) => console.error(line) };
