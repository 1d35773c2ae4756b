/** Bad input on the command line, found before any call: the CLI prints its message and exits with 2. */
export class UsageError extends Error {
  override readonly name = "UsageError";
}
