# pod-identity-webhook container image.
#
#   docker build --build-arg SOURCE_COMMIT=$(git rev-parse HEAD) -t pod-identity-webhook:latest .
#
# The image runs `node dist/cli.js serve` (see ENTRYPOINT); flags come from the
# Deployment's args (manifests/base/deployment.yaml). Manifests written for the
# reference webhook run `command: [/webhook, ...]`: /webhook runs the same
# `serve` with their flags (image/webhook). It runs as UID/GID 65532,
# the same numbers the manifests set in runAsUser/runAsGroup, and needs no
# writable filesystem.
#
# Other bases: BUILD_IMAGE needs node 24, npm and /bin/sh; BASE_IMAGE needs
# node 24 at /nodejs/bin/node (the distroless layout). scripts/base-image.sh
# makes both from local files, for machines without a registry.

# node:24-bookworm-slim (Node.js 24 LTS)
ARG BUILD_IMAGE=node:24-bookworm-slim@sha256:0e0ff40c39bc087845bfb27465a0df4ea419520094bc35842ff83dd8cbe6f9b6
# gcr.io/distroless/nodejs24-debian12 (Node.js 24 LTS; no shell, no npm)
ARG BASE_IMAGE=gcr.io/distroless/nodejs24-debian12@sha256:b35a10df56aa17825e81e836ff70fe3c27002809dd94e6bfd655ed05bac52230

# ---- build: bundle the TypeScript into dist/, then keep production deps only ----
FROM ${BUILD_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
# --ignore-scripts: the `prepare` script would run the build before the
# sources are copied; the build runs explicitly below.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json ./
COPY scripts/build.mjs ./scripts/
COPY src ./src
# --version prints the commit: docker build --build-arg SOURCE_COMMIT=$(git rev-parse HEAD) .
ARG SOURCE_COMMIT=""
# Then node_modules again, production dependencies only (from npm's cache).
RUN npm run build \
    && rm -rf node_modules \
    && npm ci --omit=dev --ignore-scripts --prefer-offline --no-audit --no-fund \
    # Type declarations, source maps and READMEs are never loaded at run time.
    && node -e "const fs = require('fs'), path = require('path'); \
        const prune = (d) => { for (const e of fs.readdirSync(d, { withFileTypes: true })) { \
          const f = path.join(d, e.name); \
          if (e.isDirectory()) prune(f); else if (/\.(d\.[cm]?ts|map|md)$/.test(e.name)) fs.rmSync(f); } }; \
        prune('node_modules');"

# ---- compile-cache: serve's modules compiled once, by the runtime's node -----
# Node 22+ keeps the code it compiles in NODE_COMPILE_CACHE and reads it back at
# the next start: serve loads its modules in ~150 ms instead of ~170 ms. Node
# only takes a cache made by the same binary, UID and file paths, so it is made
# here, on the runtime's base with the runtime's layout and user, and copied
# over owned by root (the process cannot rewrite its own code).
FROM ${BASE_IMAGE} AS compile-cache
WORKDIR /app
COPY package.json ./
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY image/compile-cache.mjs /compile-cache.mjs
ENV NODE_ENV=production
USER 65532:65532
RUN ["/nodejs/bin/node", "/compile-cache.mjs", "/tmp/compile-cache"]

# ---- runtime: node, production dependencies and dist/ only ------------------
FROM ${BASE_IMAGE} AS runtime
LABEL org.opencontainers.image.title="pod-identity-webhook" \
      org.opencontainers.image.description="Kubernetes admission webhook that gives pods AWS IAM credentials (IRSA)" \
      org.opencontainers.image.licenses="Apache-2.0"
# glibc's malloc: blocks of 64 KiB and more are mapped on their own and unmapped
# when freed, and free memory at the top of the heap goes back to the system past
# 64 KiB. Under a flood of large bodies and TLS connections the process's peak RSS
# stays ~15 MiB lower (npm run soak), at no measurable cost per request.
ENV NODE_ENV=production \
    NODE_COMPILE_CACHE=/app/compile-cache \
    MALLOC_MMAP_THRESHOLD_=65536 \
    MALLOC_TRIM_THRESHOLD_=65536
WORKDIR /app
# Files stay owned by root and read-only for the process.
COPY package.json ./
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY --chown=0:0 --from=compile-cache /tmp/compile-cache ./compile-cache
# The reference image's entry point, for its manifests (see image/webhook;
# git keeps its mode 0755, so no --chmod and no BuildKit needed).
COPY image/webhook /webhook
USER 65532:65532
# 8443: HTTPS (/mutate, /healthz, /readyz); 9999: plain-HTTP /metrics.
EXPOSE 8443 9999
# Exec form, so node is PID 1 and receives SIGTERM directly.
ENTRYPOINT ["/nodejs/bin/node", "dist/cli.js", "serve"]
