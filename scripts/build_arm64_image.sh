#!/usr/bin/env bash
# Build the arm64 runner image (Dockerfile target `runner`) without a Docker engine or a registry:
#   1. register qemu-aarch64 with binfmt_misc so arm64 programs run here (emulated, slow);
#   2. debootstrap an arm64 Debian bookworm root filesystem with python3 + venv;
#   3. turn it into a local base image with buildah (no registry involved);
#   4. `buildah bud --platform linux/arm64 --target runner` on that base.
# With Docker + buildx and registry access, the one-liner is instead:
#   docker buildx build --platform linux/arm64 --target runner -t edgekd-runner:arm64 .
# Needs root and: apt-get install buildah debootstrap qemu-user-static binfmt-support
# Usage: sudo bash scripts/build_arm64_image.sh [ROOTFS_DIR]   (then: buildah images)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOTFS=${1:-build/arm64-rootfs}
BASE=localhost/edgekd-base:bookworm-arm64
TAG=localhost/edgekd-runner:arm64
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
export STORAGE_DRIVER=${STORAGE_DRIVER:-vfs}  # works inside containers without overlay support

for tool in buildah debootstrap qemu-aarch64-static; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install buildah debootstrap qemu-user-static binfmt-support" >&2; exit 2; }
done

# 1. binfmt: arm64 ELF -> qemu-aarch64-static (F flag: the interpreter is opened now, so it works in chroots)
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
  mount binfmt_misc -t binfmt_misc /proc/sys/fs/binfmt_misc
fi
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
  echo ':qemu-aarch64:M::\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:/usr/bin/qemu-aarch64-static:F' \
    > /proc/sys/fs/binfmt_misc/register
fi

# 2. arm64 root filesystem (cached: rerunning skips it)
if [ ! -x "$ROOTFS/usr/bin/python3" ]; then
  rm -rf "$ROOTFS"
  mkdir -p "$ROOTFS"
  debootstrap --arch=arm64 --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$ROOTFS" "$MIRROR"
  rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb
fi

# 3. local base image from the root filesystem
if ! buildah inspect --type image "$BASE" >/dev/null 2>&1; then
  ctr=$(buildah from --arch arm64 --os linux scratch)
  mnt=$(buildah mount "$ctr")
  cp -a "$ROOTFS"/. "$mnt"/
  buildah umount "$ctr"
  buildah config --arch arm64 --os linux --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$ctr"
  buildah commit "$ctr" "$BASE"
  buildah rm "$ctr"
fi

# 4. the runner image (only the runner stage: no torch, nothing from the toolkit stage). A CA bundle
# that trusts this network's TLS proxy (PIP_CERT / SSL_CERT_FILE) is lent to pip as a build secret.
CA=${PIP_CERT:-${SSL_CERT_FILE:-}}
secret=()
[ -n "$CA" ] && [ -f "$CA" ] && secret=(--secret "id=cacert,src=$CA")
buildah bud --isolation chroot --pull=never --platform linux/arm64 --build-arg PYTHON_IMAGE="$BASE" \
  "${secret[@]}" --target runner -t "$TAG" .
echo "built $TAG"
buildah inspect --type image --format '{{.OCIv1.Architecture}} {{.OCIv1.Config.Entrypoint}}' "$TAG"
# Smoke test under emulation (never a timing): the runner prints its help.
ctr=$(buildah from "$TAG")
buildah run --isolation chroot "$ctr" -- /opt/venv/bin/python3 /opt/edgekd/runner.py --help | head -3
buildah rm "$ctr" >/dev/null
