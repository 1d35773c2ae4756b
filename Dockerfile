# syntax=docker/dockerfile:1
# The taskmesh image: every service, run by name (`docker run taskmesh coordinator`),
# and the helpers compose and Kubernetes use (deploy/container/entrypoint.sh).
# Node 24 slim, the services compiled ahead of time, run as a non-root user.
ARG NODE_IMAGE=node:24.21.0-bookworm-slim

# Compiles the TypeScript the services run (scripts/build.mjs) and gathers the
# files the edge Envoy serves itself (deploy/container/edge-assets.ts).
FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
# npm workspaces (packages/*, services/*): npm ci links each to node_modules/@taskmesh/<name>.
COPY packages/cli/package.json packages/cli/
COPY packages/client/package.json packages/client/
COPY packages/contracts/package.json packages/contracts/
COPY packages/kit/package.json packages/kit/
COPY packages/local/package.json packages/local/
COPY packages/mesh/package.json packages/mesh/
COPY packages/worker/package.json packages/worker/
COPY services/config/package.json services/config/
COPY services/coordinator/package.json services/coordinator/
COPY services/events/package.json services/events/
COPY services/identity/package.json services/identity/
COPY services/ledger/package.json services/ledger/
COPY services/ratelimit/package.json services/ratelimit/
COPY services/worker/package.json services/worker/
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY scripts/build.mjs scripts/
COPY services services
COPY packages packages
COPY deploy deploy
COPY ui ui
RUN build="$(node scripts/build.mjs)" \
 && mv "$build" /src/dist \
 && rm -f /src/dist/.complete /src/dist/.used-by-* \
 && node /src/dist/deploy/container/edge-assets.js /src/dist /src/edge-assets

# The packages the services need at run time: no dev tools, no embedded Postgres.
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
COPY packages/cli/package.json packages/cli/
COPY packages/client/package.json packages/client/
COPY packages/contracts/package.json packages/contracts/
COPY packages/kit/package.json packages/kit/
COPY packages/local/package.json packages/local/
COPY packages/mesh/package.json packages/mesh/
COPY packages/worker/package.json packages/worker/
COPY services/config/package.json services/config/
COPY services/coordinator/package.json services/coordinator/
COPY services/events/package.json services/events/
COPY services/identity/package.json services/identity/
COPY services/ledger/package.json services/ledger/
COPY services/ratelimit/package.json services/ratelimit/
COPY services/worker/package.json services/worker/
RUN npm ci --omit=dev --omit=optional --ignore-scripts --no-audit --no-fund \
 && npm cache clean --force

FROM ${NODE_IMAGE}
ENV NODE_ENV=production
WORKDIR /app
RUN groupadd --system --gid 10001 taskmesh \
 && useradd --system --uid 10001 --gid taskmesh --home-dir /app --no-create-home --shell /usr/sbin/nologin taskmesh \
 && install -d -o taskmesh -g taskmesh -m 0700 /var/lib/taskmesh
COPY package.json ./
COPY --from=deps /app/node_modules node_modules
COPY deploy/topology.yaml deploy/
COPY packages/contracts/gen/descriptor.binpb packages/contracts/gen/envoy-ratelimit.binpb packages/contracts/gen/
COPY --from=build /src/dist build
COPY --from=build /src/edge-assets edge-assets
COPY --chmod=0755 deploy/container/entrypoint.sh /usr/local/bin/taskmesh
USER 10001:10001
# The app's gRPC port is on loopback only (its sidecar's inbound port is the way in); metrics on every address.
EXPOSE 9464
ENTRYPOINT ["taskmesh"]
