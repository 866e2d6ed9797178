#!/usr/bin/env bash
# Builds the local base image of Graft agent images: Debian bookworm (debootstrap minbase) with git,
# ca-certificates and Node 20, imported into podman. No registry is involved; see README.md.
set -euo pipefail

TAG="localhost/graft-base:bookworm"
SUITE="bookworm"
MIRROR=""
NODE_BIN="$(command -v node || true)"
WORK_DIR=""
INCLUDE="git,ca-certificates,openssh-client,procps,less"

usage() {
  cat <<USAGE
Usage: $(basename "$0") [--mirror URL] [--node PATH] [--tag NAME] [--work-dir DIR]

Builds the base image the agent Dockerfile starts FROM, offline from any registry:
  1. debootstrap --variant=minbase ${SUITE} (+ ${INCLUDE}) from a Debian mirror
  2. copies a Node 20 binary into /usr/local/bin/node and checks it runs in the new system
  3. imports the tree with \`podman import\` as the tag below

Options:
  --mirror URL     Debian mirror (default: the first non-security URIs: of
                   /etc/apt/sources.list.d/debian.sources, else http://deb.debian.org/debian)
  --node PATH      Node 20 executable to copy in (default: \`command -v node\`: ${NODE_BIN:-none found})
  --tag NAME       image to create (default: ${TAG})
  --work-dir DIR   where the root filesystem is built (default: a temp dir, removed afterwards)
  -h, --help       this help

Needs root (debootstrap, chroot), debootstrap, podman and tar; downloads about 50 MB from the mirror.
Then build the agent image:  podman build --pull=never -f deploy/images/Dockerfile packages/agent/dist
USAGE
}

die() { printf 'make-base: %s\n' "$*" >&2; exit 1; }
STARTED=$SECONDS
step() { printf '==> [%3ds] %s\n' "$((SECONDS - STARTED))" "$*"; }

while [ $# -gt 0 ]; do
  case "$1" in
    --mirror) MIRROR="${2:?--mirror needs a URL}"; shift 2 ;;
    --node) NODE_BIN="${2:?--node needs a path}"; shift 2 ;;
    --tag) TAG="${2:?--tag needs a name}"; shift 2 ;;
    --work-dir) WORK_DIR="${2:?--work-dir needs a directory}"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done

[ "$(id -u)" -eq 0 ] || die "run as root (debootstrap and chroot need it)"
for tool in debootstrap podman tar chroot; do
  command -v "$tool" >/dev/null || die "$tool is missing (apt-get install -y debootstrap podman)"
done
[ -n "$NODE_BIN" ] && [ -x "$NODE_BIN" ] || die "no Node executable: pass --node PATH"
NODE_VERSION="$("$NODE_BIN" --version)"
case "$NODE_VERSION" in
  v20.*) ;;
  *) die "$NODE_BIN is Node $NODE_VERSION; agents need Node 20 (pass --node PATH)" ;;
esac

if [ -z "$MIRROR" ]; then
  if [ -r /etc/apt/sources.list.d/debian.sources ]; then
    MIRROR="$(awk '/^URIs:/ && $2 !~ /security/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources)"
  fi
  MIRROR="${MIRROR:-http://deb.debian.org/debian}"
fi

if [ -z "$WORK_DIR" ]; then
  WORK_DIR="$(mktemp -d "${TMPDIR:-/tmp}/graft-base.XXXXXX")"
  trap 'rm -rf "$WORK_DIR"' EXIT
fi
ROOTFS="$WORK_DIR/rootfs"
[ ! -e "$ROOTFS" ] || die "$ROOTFS exists; pass an empty --work-dir"

step "debootstrap --variant=minbase $SUITE from $MIRROR (with $INCLUDE)"
debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$ROOTFS" "$MIRROR"

step "Node $NODE_VERSION from $NODE_BIN"
install -m 0755 "$NODE_BIN" "$ROOTFS/usr/local/bin/node"
INSIDE="$(chroot "$ROOTFS" /usr/local/bin/node --version)" || die "the copied node does not run in $SUITE (missing libraries?)"
[ "$INSIDE" = "$NODE_VERSION" ] || die "node in the image reports $INSIDE, expected $NODE_VERSION"

step "trimming apt caches"
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/log/*.log
# debootstrap copies the build host's resolver and name in; engines mount their own per container.
: > "$ROOTFS/etc/resolv.conf"
echo graft-agent > "$ROOTFS/etc/hostname"

step "podman import as $TAG"
tar -C "$ROOTFS" --numeric-owner -c . | podman import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["/bin/bash"]' \
  - "$TAG"

step "done: $TAG ($(podman image inspect --format '{{.Size}}' "$TAG" | awk '{ printf "%.0f MB", $1 / 1e6 }'))"
