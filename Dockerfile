# syntax=docker/dockerfile:1
# Portcullis container image: build with the dev toolchain, run with production dependencies only.
#
#   docker build -t portcullis:dev --build-arg VERSION=0.1.0 --build-arg REVISION=$(git rev-parse HEAD) .
#   docker run --rm -p 8080:8080 -p 9090:9090 --read-only --tmpfs /tmp \
#     -v "$PWD/portcullis.yaml:/etc/portcullis/portcullis.yaml:ro" portcullis:dev
#
# Runtime facts the Helm chart relies on (helm/portcullis, checked by test/packaging):
#   - runs as uid/gid 10001, never root;
#   - writes nothing outside /tmp, so a read-only root filesystem works (mount /tmp as tmpfs/emptyDir);
#   - tini is PID 1 and forwards SIGTERM to Node, which drains in-flight requests (shutdownGracePeriod);
#   - proxy on 8080 (/healthz, /readyz), metrics on 9090 (/metrics).

# ---- build: full dependency tree, TypeScript compile, then drop devDependencies ----------------
FROM node:24-bookworm-slim AS build
WORKDIR /app

# Lockfile first so the dependency layer is cached until package*.json change.
# --ignore-scripts: no install script of any dependency runs at build time (supply-chain hygiene;
# nothing Portcullis uses is native), and it also skips our own `prepare` (tsc) before src/ exists.
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund

COPY tsconfig.json ./
COPY src ./src
RUN npm run build \
 && npm prune --omit=dev --ignore-scripts --no-audit --no-fund

# ---- runtime: slim Node, tini, production node_modules, compiled dist --------------------------
FROM node:24-bookworm-slim AS runtime

ARG VERSION=0.0.0-dev
ARG REVISION=unknown
ARG CREATED=unknown
# Where this image's source lives; CI passes the real repository URL.
ARG SOURCE_URL=https://github.com/portcullis/portcullis
LABEL org.opencontainers.image.title="portcullis" \
      org.opencontainers.image.description="OpenID Connect authenticating reverse proxy" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.base.name="docker.io/library/node:24-bookworm-slim"

# tini as PID 1: Node as PID 1 gets no default signal handling and reaps no orphans; tini forwards
# SIGTERM/SIGINT/SIGHUP (drain, hot reload) to Node and reaps zombies. Without -g on purpose: with
# `workers: N` the primary process coordinates the drain of its workers itself.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/*

# A fixed numeric uid/gid so Kubernetes' runAsNonRoot can verify it and the chart's
# runAsUser/fsGroup (10001) match. No home directory: nothing is written outside /tmp.
RUN groupadd --system --gid 10001 portcullis \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin portcullis

ENV NODE_ENV=production \
    TMPDIR=/tmp
WORKDIR /app

# Code stays owned by root and read-only to the runtime user: a compromised process cannot
# rewrite Portcullis, even where the root filesystem is writable.
# package.json is needed at run time: its "type": "module" makes dist/*.js ES modules.
COPY package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY bin ./bin
# The commented example config, for reference (`docker run ... cat config/portcullis.yaml`);
# the real config is mounted at /etc/portcullis/portcullis.yaml.
COPY config ./config

USER 10001:10001
EXPOSE 8080 9090

# Docker/Compose liveness (Kubernetes ignores HEALTHCHECK and uses the chart's probes). Slim images
# have no curl, so Node itself asks /healthz. Assumes the default listen port 8080.
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:8080/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]

ENTRYPOINT ["/usr/bin/tini", "--", "node", "bin/portcullis.mjs"]
CMD ["--config", "/etc/portcullis/portcullis.yaml"]
