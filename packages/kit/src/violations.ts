import { MeshError, invalidArgument, type FieldViolation, type Reason } from "./errors.js";

/**
 * Collects the field violations of one request, so a caller learns every bad
 * field at once; `check()` throws INVALID_ARGUMENT (the first violation's
 * reason) when any were found.
 */
export class Violations {
  private readonly found: FieldViolation[] = [];

  add(field: string, description: string, reason: Reason = "VAL_INVALID_ARGUMENT"): this {
    this.found.push({ field, description, reason });
    return this;
  }

  /** True when nothing was found so far. */
  get ok(): boolean {
    return this.found.length === 0;
  }

  /** What was found so far, for a caller that gathers more before it refuses (see {@link parseItem}). */
  get all(): readonly FieldViolation[] {
    return this.found;
  }

  check(): void {
    if (this.found.length > 0) throw invalidArgument(this.found, (this.found[0]!.reason ?? "VAL_INVALID_ARGUMENT") as Reason);
  }
}

/**
 * One item of a request (a workflow's task, a spawned child) parsed by
 * `parse`: its value, or undefined when `parse` refuses it, its violations
 * then added to `found` under the item's `field` (`tasks[3].task` +
 * `capability` → `tasks[3].task.capability`), so a caller learns every bad
 * item at once. Anything else `parse` throws is thrown on.
 */
export function parseItem<T>(field: string, found: FieldViolation[], parse: () => T): T | undefined {
  try {
    return parse();
  } catch (error) {
    if (!(error instanceof MeshError)) throw error;
    found.push(...error.violations.map((f) => ({ ...f, field: `${field}.${f.field}` })));
    return undefined;
  }
}
