import type { MeshError } from "@taskmesh/kit";

/**
 * The result of a transaction that may refuse: a refusal is returned, not
 * thrown, so the audit row recording it (and any revocation it causes)
 * commits; the caller throws the error after the commit.
 */
export type Outcome<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: MeshError };

/** A successful outcome. */
export const ok = <T>(value: T): Outcome<T> => ({ ok: true, value });

/** A refusal. */
export const refuse = <T>(error: MeshError): Outcome<T> => ({ ok: false, error });

/** The value of an outcome, or its error thrown. */
export function unwrap<T>(outcome: Outcome<T>): T {
  if (!outcome.ok) throw outcome.error;
  return outcome.value;
}
