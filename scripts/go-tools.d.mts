/** Every pinned component of deploy/versions.json, by name. */
export declare function pinnedVersions(): Record<string, Record<string, unknown>>;
/** The folder holding the pinned Go tool `name`, built there first when missing. */
export declare function ensureGoTool(name: string, options: { say: (line: string) => void; fail: (line: string) => never; stdio?: unknown }): string;
