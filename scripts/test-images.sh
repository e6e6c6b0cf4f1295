#!/usr/bin/env bash
# Builds images/Dockerfile.services for real with buildah and starts what it built:
#   make test-images            (or: bash scripts/test-images.sh; run as root)
#
# No registry for base images is reachable on the machines this runs on, so the bases are Debian
# bookworm root file systems made here with debootstrap from Debian's packages and imported into
# buildah (vfs storage, `--isolation chroot`: what works unprivileged-in-a-sandbox). Then, in a
# container of the built image, it runs the image's own ENTRYPOINT with `serve evaluator` as the
# image's own USER, and checks from outside: gRPC health SERVING, reflection lists the Evaluator,
# and a Grade call judges 1/2 and 0.5 equal (the chart's helm-test check, run inside the image).
# It prints the build time and the image size, then removes every container, image and the vfs
# storage (gigabytes: vfs copies each layer whole).
#
# Environment: TEST_IMAGES_DIR (work folder, default /var/tmp/mathforge-test-images),
# DEBIAN_MIRROR (default http://deb.debian.org/debian), TORCH_INDEX_URL (torch's CPU index; default
# PyTorch's), WHEELS (a folder of wheels pip may take, default $PIP_FIND_LINKS), CA_BUNDLE (CA
# certificates pip trusts in the build, default $PIP_CERT or this machine's bundle), PORT (50355).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
WORK=${TEST_IMAGES_DIR:-/var/tmp/mathforge-test-images}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PORT=${PORT:-50355}
METRICS_PORT=$((PORT + 1))
WHEELS=${WHEELS:-${PIP_FIND_LINKS:-}}
CA_BUNDLE=${CA_BUNDLE:-${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}}
[ -f "$CA_BUNDLE" ] || CA_BUNDLE=""
PY=${PYTHON:-$REPO/.venv/bin/python}
IMAGE=localhost/mathforge-services:test

for tool in buildah debootstrap; do
  command -v "$tool" >/dev/null || {
    echo "test-images: $tool is missing (Debian: apt-get install -y buildah debootstrap)" >&2
    exit 1
  }
done
[ "$(id -u)" -eq 0 ] || { echo "test-images: debootstrap and buildah's chroot isolation need root" >&2; exit 1; }

mkdir -p "$WORK"
BUILDAH=(buildah --storage-driver vfs --root "$WORK/storage" --runroot "$WORK/run")
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill -TERM -- "-$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  "${BUILDAH[@]}" rm --all >/dev/null 2>&1 || true
  "${BUILDAH[@]}" rmi --all --force >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# A bookworm root file system with the given packages, imported as image $2.
make_base() {
  local name=$1 image=$2 packages=$3 rootfs="$WORK/rootfs-$1" ctr mnt
  debootstrap --variant=minbase --include="$packages" bookworm "$rootfs" "$MIRROR" >"$WORK/debootstrap-$name.log" 2>&1 \
    || { tail -20 "$WORK/debootstrap-$name.log" >&2; exit 1; }
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  ctr=$("${BUILDAH[@]}" from scratch)
  mnt=$("${BUILDAH[@]}" mount "$ctr")
  cp -a "$rootfs"/. "$mnt"/
  "${BUILDAH[@]}" umount "$ctr" >/dev/null
  "${BUILDAH[@]}" config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$ctr"
  "${BUILDAH[@]}" commit --quiet --rm "$ctr" "$image" >/dev/null
  rm -rf "$rootfs"
}

start=$(date +%s)
echo "== bases: Debian bookworm by debootstrap from $MIRROR"
make_base run localhost/mathforge-base:bookworm python3,python-is-python3,ca-certificates
make_base build localhost/mathforge-base-build:bookworm \
  python3,python-is-python3,python3-venv,python3-dev,g++,ca-certificates
bases_done=$(date +%s)

echo "== build images/Dockerfile.services"
args=(--build-arg BUILD_BASE=localhost/mathforge-base-build:bookworm
      --build-arg RUN_BASE=localhost/mathforge-base:bookworm)
[ -n "${TORCH_INDEX_URL:-}" ] && args+=(--build-arg "TORCH_INDEX_URL=$TORCH_INDEX_URL")
if [ -n "$WHEELS" ]; then
  args+=(--volume "$WHEELS:/wheels:ro" --build-arg PIP_FIND_LINKS=/wheels)
fi
# This machine's CA bundle for pip inside the build (a proxy may re-sign TLS); mounted, never baked in.
if [ -n "$CA_BUNDLE" ]; then
  args+=(--volume "$CA_BUNDLE:/run/mathforge-ca.crt:ro" --build-arg PIP_CERT=/run/mathforge-ca.crt)
fi
"${BUILDAH[@]}" build --isolation chroot --layers=false --pull=never "${args[@]}" \
  -f "$REPO/images/Dockerfile.services" -t "$IMAGE" "$REPO"
built=$(date +%s)
size=$("${BUILDAH[@]}" images --format '{{.Size}}' "$IMAGE")
entrypoint=$("${BUILDAH[@]}" inspect --type image --format '{{range .OCIv1.Config.Entrypoint}}{{.}} {{end}}' "$IMAGE")
user=$("${BUILDAH[@]}" inspect --type image --format '{{.OCIv1.Config.User}}' "$IMAGE")
echo "built $IMAGE: $size, entrypoint [$entrypoint], user $user"
[ -n "$user" ] && [ "${user%%:*}" != 0 ] && [ "${user%%:*}" != root ] \
  || { echo "test-images: the image runs as root ($user)" >&2; exit 1; }

echo "== run: $entrypoint serve evaluator, as $user"
ctr=$("${BUILDAH[@]}" from --pull=never "$IMAGE")
# chroot isolation shares this machine's network, so the service listens on its loopback.
# shellcheck disable=SC2086  # the entrypoint is split into its words on purpose
setsid "${BUILDAH[@]}" run --isolation chroot --user "$user" "$ctr" -- $entrypoint serve evaluator \
  --host 127.0.0.1 --port "$PORT" --metrics-port "$METRICS_PORT" >"$WORK/evaluator.log" 2>&1 &
server_pid=$!

# Health, an Info and a Grade, by the chart's helm-test script, run inside the image (its grpc
# and its mathforge), then reflection from outside.
"${BUILDAH[@]}" copy "$ctr" "$REPO/helm/mathforge/files/grpc_check.py" /opt/grpc_check.py >/dev/null
"${BUILDAH[@]}" run --isolation chroot --user "$user" "$ctr" -- python /opt/grpc_check.py call \
  --name evaluator --target "127.0.0.1:$PORT" --ready-timeout-s 120 \
  || { echo "--- evaluator log"; tail -30 "$WORK/evaluator.log"; exit 1; }
"$PY" - "$PORT" <<'EOF'
import sys

import grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

with grpc.insecure_channel(f"127.0.0.1:{sys.argv[1]}") as channel:
    grpc.channel_ready_future(channel).result(timeout=30)
    services = set(ProtoReflectionDescriptorDatabase(channel).get_services())
wanted = {"mathforge.v1.Evaluator", "grpc.health.v1.Health"}
if not wanted <= services:
    sys.exit(f"reflection lists {sorted(services)}, missing {sorted(wanted - services)}")
print(f"reflection ok: {sorted(services)}")
EOF
# The serving process itself (not buildah, which stays root) runs as the image's user.
uids=$(for pid in $(pgrep -f -- "serve evaluator --host 127.0.0.1 --port $PORT"); do stat -c %u "/proc/$pid"; done)
echo "$uids" | grep -qx "${user%%:*}" \
  || { echo "test-images: no evaluator process runs as uid ${user%%:*} (uids: $uids)" >&2; exit 1; }
kill -TERM -- "-$server_pid"
wait "$server_pid" 2>/dev/null || true
server_pid=""
done_at=$(date +%s)
echo "test-images: ok; bases $((bases_done - start)) s, build $((built - bases_done)) s, checks $((done_at - built)) s, total $((done_at - start)) s; image $size"
