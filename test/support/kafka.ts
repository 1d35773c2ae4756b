import { randomBytes } from "node:crypto";

/** A topic (and group id) prefix of its own for one test file, e.g. `test.kafka.3f9a1c`. */
export function testTopicPrefix(label: string): string {
  return `test.${label.replace(/[^a-zA-Z0-9-]/g, "-")}.${randomBytes(3).toString("hex")}`;
}
