import { TOPICS } from "@taskmesh/contracts";

/** The topic of task events (the ledger's outbox relay writes it). */
export const TASKS_TOPIC = TOPICS.tasks;
/** The topic of identity events. */
export const IDENTITY_TOPIC = TOPICS.identity;
/** The dead-letter topic. */
export const DLQ_TOPIC = TOPICS.deadLetters;

/** The config key of the type registry. */
export const REGISTRY_KEY = "/events/types";

/** Routes that are always registered, whatever `/events/types` says. */
export const BUILT_IN_ROUTES: Readonly<Record<string, string>> = Object.freeze({
  "taskmesh.task.v1.*": TASKS_TOPIC,
  "taskmesh.identity.v1.*": IDENTITY_TOPIC,
});

const TYPE = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)+$/;
const PATTERN = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*(\.\*)?$/;
const TOPIC = /^[A-Za-z0-9._-]{1,249}$/;

/** True for a well-formed event type: reverse-DNS style, dot-separated words (`taskmesh.task.v1.succeeded`). */
export function isEventType(value: string): boolean {
  return value.length <= 256 && TYPE.test(value);
}

/** True for a type pattern: a type, or a prefix ending in `.*`. */
export function isTypePattern(value: string): boolean {
  return value.length <= 256 && PATTERN.test(value) && value !== "*";
}

/** True for a legal Kafka topic name. */
export function isTopicName(value: string): boolean {
  return TOPIC.test(value) && value !== "." && value !== "..";
}

/** True when `type` matches `pattern` (exact, or `prefix.*` for any type under the prefix). */
export function typeMatches(pattern: string, type: string): boolean {
  return pattern.endsWith(".*") ? type.startsWith(pattern.slice(0, -1)) : pattern === type;
}

/** True when `type` matches any of `patterns`; an empty list matches every type. */
export function matchesAny(patterns: readonly string[], type: string): boolean {
  return patterns.length === 0 || patterns.some((p) => typeMatches(p, type));
}

/**
 * The value of config key `/events/types`: a JSON object from a type (or a
 * prefix ending in `.*`) to a topic. Throws for anything else (the previous
 * registry then stays in force).
 */
export function parseRoutes(value: unknown): Readonly<Record<string, string>> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw new Error("expected a JSON object from event type to topic");
  const routes: Record<string, string> = {};
  for (const [pattern, topic] of Object.entries(value)) {
    if (!isTypePattern(pattern)) throw new Error(`bad event type pattern ${JSON.stringify(pattern)}`);
    if (typeof topic !== "string" || !isTopicName(topic)) throw new Error(`bad topic for ${pattern}: ${JSON.stringify(topic)}`);
    routes[pattern] = topic;
  }
  return Object.freeze(routes);
}

/**
 * The topic an event type is routed to, or undefined when it is not
 * registered. The most specific entry wins: an exact type, else the longest
 * matching prefix; the built-in routes always apply.
 */
export function routeOf(type: string, configured: Readonly<Record<string, string>>): string | undefined {
  const routes = { ...configured, ...BUILT_IN_ROUTES };
  if (routes[type] !== undefined && !type.endsWith(".*")) return routes[type];
  let best: { length: number; topic: string } | undefined;
  for (const [pattern, topic] of Object.entries(routes)) {
    if (pattern.endsWith(".*") && typeMatches(pattern, type) && (best === undefined || pattern.length > best.length)) best = { length: pattern.length, topic };
  }
  return best?.topic;
}
