import { spawn } from "node:child_process";

/**
 * Runs a tool in the foreground (stdin, stdout and stderr its own), passing
 * on SIGINT and SIGTERM, and answers its exit code (130 when a signal ended
 * it): how `taskmesh grpcurl` and `taskmesh db console` hand over to
 * grpcurl and psql.
 */
export function runForeground(binary: string, args: readonly string[]): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const child = spawn(binary, [...args], { stdio: "inherit" });
    for (const signal of ["SIGINT", "SIGTERM"] as const) process.once(signal, () => child.kill(signal));
    child.once("error", reject);
    child.once("exit", (code, signal) => resolve(code ?? (signal ? 130 : 1)));
  });
}
