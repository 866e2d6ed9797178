# The Graft hub image: the `graft` CLI with the hub (and everything `graft hub start|migrate` need).
#
# Build from the repository root (the context is the whole workspace; .dockerignore keeps it small):
#   docker build -f deploy/docker/hub.Dockerfile -t localhost/graft-hub:latest .
#   podman build -f deploy/docker/hub.Dockerfile -t localhost/graft-hub:latest .
#
# Run:
#   docker run --rm --env-file hub.env localhost/graft-hub:latest hub migrate     # once per release
#   docker run -d -p 8080:8080 --env-file hub.env localhost/graft-hub:latest       # = hub start
# with DATABASE_URL, REDIS_URL, GRAFT_MASTER_KEY (the same on every replica) in hub.env.
# deploy/README.md describes every setting; docs/configuration.md lists all variables.

ARG NODE_IMAGE=node:20-bookworm-slim

# --- build: install the workspace, compile every package, prune to production dependencies ---
FROM ${NODE_IMAGE} AS build
ARG PNPM_VERSION=12
ENV CI=true \
    PNPM_HOME=/pnpm \
    PATH=/pnpm:$PATH
RUN npm install -g "pnpm@${PNPM_VERSION}" && pnpm --version
WORKDIR /src
# Dependencies first, from the lockfile alone: this layer is reused until the lockfile changes.
COPY pnpm-lock.yaml pnpm-workspace.yaml .npmrc package.json ./
RUN pnpm fetch --frozen-lockfile
COPY . .
RUN pnpm install --frozen-lockfile \
 && pnpm -r --workspace-concurrency=1 build \
 && pnpm --filter @graft/cli --prod deploy /out \
 && rm -rf /out/src /out/tsconfig*.json

# --- runtime: node, the deployed CLI, a non-root user ---
FROM ${NODE_IMAGE}
ARG GRAFT_UID=10001
# The data dir (and the log archive under it) exist in the image, owned by graft, so a named volume
# mounted there starts out with that owner.
RUN groupadd --system --gid "${GRAFT_UID}" graft \
 && useradd --system --uid "${GRAFT_UID}" --gid graft --home-dir /var/lib/graft --shell /usr/sbin/nologin graft \
 && mkdir -p /var/lib/graft/log-archive \
 && chown -R graft:graft /var/lib/graft \
 && chmod 0700 /var/lib/graft
COPY --from=build /out /opt/graft
RUN printf '#!/bin/sh\nexec node /opt/graft/dist/main.js "$@"\n' > /usr/local/bin/graft \
 && chmod 0755 /usr/local/bin/graft
ENV NODE_ENV=production \
    GRAFT_DATA_DIR=/var/lib/graft \
    GRAFT_HUB_HOST=0.0.0.0 \
    GRAFT_HUB_PORT=8080
USER graft
WORKDIR /var/lib/graft
EXPOSE 8080
# Liveness only: /readyz (database reachable) belongs to the load balancer, so a Postgres outage
# takes replicas out of rotation without the engine restarting them.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch(`http://127.0.0.1:${process.env.GRAFT_HUB_PORT || 8080}/healthz`).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# The hub handles SIGTERM itself (stops accepting, hands its tunnels back, drains in-flight requests,
# at most 15 s): give it `docker stop -t 20` / stop_grace_period: 20s.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/graft"]
CMD ["hub", "start"]
