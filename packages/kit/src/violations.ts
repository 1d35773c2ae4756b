import { invalidArgument, type FieldViolation, type Reason } from "./errors.js";

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

  check(): void {
    if (this.found.length > 0) throw invalidArgument(this.found, (this.found[0]!.reason ?? "VAL_INVALID_ARGUMENT") as Reason);
  }
}
