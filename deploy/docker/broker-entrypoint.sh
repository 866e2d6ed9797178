#!/bin/sh
# Entrypoint of the broker image: on a first start, phase 2 of the two-phase registration (trade the
# join token an operator got from `graft broker register` for this broker's secret), then the daemon.
# With arguments it runs `graft ARGS` instead (e.g. `broker join --help`).
#
# Where the join token comes from, first match wins:
#   GRAFT_BROKER_ID + GRAFT_BROKER_JOIN_TOKEN           one broker (compose, a single container)
#   GRAFT_BROKER_JOIN_DIR/<GRAFT_NODE_NAME>.broker-id    one registration per node (the Kubernetes
#   GRAFT_BROKER_JOIN_DIR/<GRAFT_NODE_NAME>.token        DaemonSet mounts a Secret there)
#   GRAFT_BROKER_BOOTSTRAP_HUB_URL + _TOKEN               `graft broker start` registers itself with a
#                                                         platform admin's API key (auto-provide)
# The token works once: after the join, credentials.json in the data dir is what counts, so the data
# dir must outlive the container.
set -eu

if [ "$#" -gt 0 ]; then
  exec graft "$@"
fi

data_dir="${GRAFT_BROKER_DATA_DIR:-/var/lib/graft-broker}"
export GRAFT_BROKER_DATA_DIR="$data_dir"

if [ ! -f "$data_dir/credentials.json" ]; then
  broker_id="${GRAFT_BROKER_ID:-}"
  token="${GRAFT_BROKER_JOIN_TOKEN:-}"
  if [ -z "$token" ] && [ -n "${GRAFT_BROKER_JOIN_DIR:-}" ] && [ -n "${GRAFT_NODE_NAME:-}" ] && [ -f "$GRAFT_BROKER_JOIN_DIR/$GRAFT_NODE_NAME.token" ]; then
    broker_id="$(cat "$GRAFT_BROKER_JOIN_DIR/$GRAFT_NODE_NAME.broker-id")"
    token="$(cat "$GRAFT_BROKER_JOIN_DIR/$GRAFT_NODE_NAME.token")"
  fi
  if [ -n "$token" ]; then
    if [ -z "${GRAFT_HUB_URL:-}" ] || [ -z "$broker_id" ]; then
      echo "graft-broker: a join token is set but GRAFT_HUB_URL or the broker id is not; set both as printed by graft broker register" >&2
      exit 2
    fi
    set -- broker join --hub "$GRAFT_HUB_URL" --broker-id "$broker_id" --token "$token" --data-dir "$data_dir"
    if [ -n "${GRAFT_BROKER_HOSTNAME:-}" ]; then set -- "$@" --hostname "$GRAFT_BROKER_HOSTNAME"; fi
    if [ -n "${GRAFT_BROKER_RUNTIMES:-}" ]; then set -- "$@" --runtimes "$GRAFT_BROKER_RUNTIMES"; fi
    if [ -n "${GRAFT_BROKER_MAX_AGENTS:-}" ]; then set -- "$@" --max-agents "$GRAFT_BROKER_MAX_AGENTS"; fi
    graft "$@"
  elif [ -z "${GRAFT_BROKER_BOOTSTRAP_TOKEN:-}" ]; then
    echo "graft-broker: $data_dir holds no credentials.json and no join token is set." >&2
    echo "  Register this broker (platform admin): graft broker register --name NAME ..." >&2
    echo "  then set GRAFT_HUB_URL, GRAFT_BROKER_ID and GRAFT_BROKER_JOIN_TOKEN (compose: broker.env)," >&2
    echo "  or the <node>.broker-id and <node>.token keys of the graft-broker-join Secret (Kubernetes)." >&2
    exit 2
  fi
fi

exec graft broker start
