# pod-identity-webhook container image.
#
#   docker build -t pod-identity-webhook:latest .
#
# The image runs `node dist/cli.js serve` (see ENTRYPOINT); flags come from the
# Deployment's args (manifests/base/deployment.yaml). Manifests written for the
# reference webhook run `command: [/webhook, ...]`: /webhook runs the same
# `serve` with their flags (image/webhook). It runs as UID/GID 65532,
# the same numbers the manifests set in runAsUser/runAsGroup, and needs no
# writable filesystem.

# ---- build: compile TypeScript to dist/ ------------------------------------
FROM node:24-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
# --ignore-scripts: the `prepare` script would run the build before the
# sources are copied; the build runs explicitly below.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
# --version prints the commit: docker build --build-arg SOURCE_COMMIT=$(git rev-parse HEAD) .
ARG SOURCE_COMMIT=""
RUN npm run build

# ---- runtime: production dependencies + dist/ ------------------------------
FROM node:24-bookworm-slim AS runtime
LABEL org.opencontainers.image.title="pod-identity-webhook" \
      org.opencontainers.image.description="Kubernetes admission webhook that gives pods AWS IAM credentials (IRSA)" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
# Production dependencies only. --ignore-scripts because `prepare` would try
# to run the TypeScript build, which is neither needed nor possible here.
# The package managers are removed afterwards: the server only needs `node`.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
    && npm cache clean --force \
    && rm -rf /usr/local/lib/node_modules/npm /usr/local/bin/npm /usr/local/bin/npx \
              /usr/local/lib/node_modules/corepack /usr/local/bin/corepack \
              /opt/yarn-* /usr/local/bin/yarn /usr/local/bin/yarnpkg /root/.npm
COPY --from=build /src/dist ./dist
# The reference image's entry point, for its manifests (see image/webhook).
COPY --chmod=0755 image/webhook /webhook
# Files stay owned by root and read-only for the process.
USER 65532:65532
# 8443: HTTPS (/mutate, /healthz, /readyz); 9999: plain-HTTP /metrics.
EXPOSE 8443 9999
# Exec form, so node is PID 1 and receives SIGTERM directly.
ENTRYPOINT ["node", "dist/cli.js", "serve"]
