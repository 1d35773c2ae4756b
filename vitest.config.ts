import { defaultServerConditions } from "vite";
import { defineConfig } from "vitest/config";

/**
 * The workspaces' sources, not the bundles they publish: `@taskmesh/client`
 * and `@taskmesh/worker` export their TypeScript under this condition (as
 * tsconfig's customConditions and scripts/build.mjs read them).
 */
const conditions = ["taskmesh-source", ...defaultServerConditions];

export default defineConfig({
  resolve: { conditions },
  ssr: { resolve: { conditions } },
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/support/global-setup.ts"],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Two cores: files run in parallel two at a time; each isolates itself by database.
    maxWorkers: 2,
    pool: "forks",
  },
});
