# The Graft broker image: the `graft` CLI with the broker daemon, plus what its runtimes and agents
# need on the node (git for repository clones, bubblewrap and util-linux for the bwrap runtime).
#
# Build from the repository root:
#   docker build -f deploy/docker/broker.Dockerfile -t localhost/graft-broker:latest .
#
# The entrypoint (deploy/docker/broker-entrypoint.sh) joins on first start with a join token from
# `graft broker register`, then runs `graft broker start`; see deploy/README.md.
#
# What each runtime (GRAFT_BROKER_RUNTIMES) needs from the container engine:
#   process  nothing more. Agents are processes of this container, so they stop with it (outside a
#            container, agents outlive a broker restart and the next start adopts them).
#   bwrap    user namespaces and a fresh /proc inside the container: run it privileged (or at least
#            with seccomp, AppArmor and the masked /proc paths unconfined); the host must allow
#            unprivileged user namespaces.
#   docker   the host's Docker or Podman API socket mounted (DOCKER_HOST, default
#            unix:///var/run/docker.sock) and readable by this user (add the socket's group), and the
#            data dir bind-mounted at the SAME path on host and container: the engine bind-mounts
#            agent workspaces, tools and the hub relay socket from host paths under it. Agent images
#            are never pulled; build them with deploy/images/. Containers outlive a broker restart.

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

# --- runtime ---
FROM ${NODE_IMAGE}
ARG GRAFT_UID=10001
# tini as PID 1 reaps the orphans agents leave behind (the process runtime's process groups).
RUN apt-get update \
 && apt-get install -y --no-install-recommends bubblewrap ca-certificates git openssh-client tini \
 && rm -rf /var/lib/apt/lists/*
# The data dir exists in the image, owned by the broker's user, so a named volume mounted there
# starts out with that owner (a host directory must be chowned to GRAFT_UID by the operator).
RUN groupadd --system --gid "${GRAFT_UID}" graft \
 && useradd --system --uid "${GRAFT_UID}" --gid graft --home-dir /var/lib/graft-broker --shell /usr/sbin/nologin graft \
 && mkdir -p /var/lib/graft-broker \
 && chown graft:graft /var/lib/graft-broker \
 && chmod 0700 /var/lib/graft-broker
COPY --from=build /out /opt/graft
COPY deploy/docker/broker-entrypoint.sh /usr/local/bin/graft-broker-entrypoint
RUN printf '#!/bin/sh\nexec node /opt/graft/dist/main.js "$@"\n' > /usr/local/bin/graft \
 && chmod 0755 /usr/local/bin/graft /usr/local/bin/graft-broker-entrypoint
ENV NODE_ENV=production \
    GRAFT_BROKER_DATA_DIR=/var/lib/graft-broker \
    GRAFT_BROKER_PORT=9800
USER graft
WORKDIR /var/lib/graft-broker
# The local API (health, metrics, agents). It listens on 127.0.0.1 unless GRAFT_BROKER_HOST says
# otherwise; set GRAFT_BROKER_HOST=0.0.0.0 for Prometheus on the container network, never publish it.
EXPOSE 9800
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["node", "-e", "const h = process.env.GRAFT_BROKER_HOST; const host = !h || h === '0.0.0.0' || h === '::' ? '127.0.0.1' : h.includes(':') ? `[${h}]` : h; fetch(`http://${host}:${process.env.GRAFT_BROKER_PORT || 9800}/healthz`).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# The broker stops on SIGTERM (closes its tunnel, local API and log shipping); its agents are left
# running (those of the process and bwrap runtimes end with the container, see above).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/graft-broker-entrypoint"]
