#!/usr/bin/env bash
# Do exported models give the same outputs under aarch64 onnxruntime? Runs the artifact in an arm64
# Debian root filesystem under qemu-user emulation and compares with this host's onnxruntime.
# Parity only: emulation is ~300x slower, so nothing here is a timing.
#
# onnxruntime's cpuinfo library crashes under qemu-user when it reads the host's x86
# /proc/cpuinfo and /sys/devices/system/cpu (shared/DESIGN.md); inside a private mount namespace
# (unshare -m) both are replaced by those of a one-core Cortex-A72.
#
# Needs root, the rootfs from scripts/build_arm64_image.sh (step 2) and network access to PyPI.
# Usage: sudo bash scripts/arm64_parity.sh MODEL.onnx [MODEL.onnx ...]
#        (ROOTFS=build/arm64-rootfs, FRAMES=300, ATOL=1e-3, AGREE=0.9, QEMU_CPU=cortex-a72 by default)
# A model passes if its outputs match to ATOL, or (int8: x86 and Arm kernels round differently) if
# the best token agrees on >= AGREE of the frames.
# QEMU_CPU picks the emulated core and so the kernels onnxruntime dispatches to: cortex-a72 (Pi 4,
# NEON), cortex-a76 (Pi 5, + dotprod), max (everything qemu knows, i8mm included). Seen here with
# onnxruntime 1.32: dynamic-int8 models agree on ~95 % of frames as a72/a76 and give garbage as
# `max` (the i8mm path) -- a qemu or onnxruntime fault not checked on hardware; Pi 4/5 lack i8mm.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOTFS=${ROOTFS:-build/arm64-rootfs}
FRAMES=${FRAMES:-300}
ATOL=${ATOL:-1e-3}
AGREE=${AGREE:-0.9}
export QEMU_CPU=${QEMU_CPU:-cortex-a72}
FEATURES=${FEATURES:-fp asimd evtstrm crc32 cpuid}  # Cortex-A72 (Pi 4); an A76 adds asimddp (dotprod)
ORT=$(python3 -c "import onnxruntime; print(onnxruntime.__version__)")
NP=$(python3 -c "import numpy; print(numpy.__version__)")
[ -x "$ROOTFS/usr/bin/python3" ] || { echo "no arm64 rootfs at $ROOTFS: run scripts/build_arm64_image.sh first" >&2; exit 2; }
[ $# -ge 1 ] || { echo "usage: $0 MODEL.onnx [...]" >&2; exit 2; }
W="$ROOTFS/parity"
mkdir -p "$W/wheels" "$W/fake_sys"

# the same onnxruntime / numpy versions as this host, as aarch64 wheels for the rootfs's Python
PYV=$(chroot "$ROOTFS" /usr/bin/python3 -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')
if [ ! -x "$W/venv/bin/python" ]; then
  python3 -m pip download -q --only-binary=:all: --platform manylinux2014_aarch64 --platform manylinux_2_28_aarch64 \
    --python-version "$PYV" -d "$W/wheels" "onnxruntime==$ORT" "numpy==$NP"
fi

# a one-core Cortex-A72 as cpuinfo sees it (qemu's own HWCAPs still say what it emulates)
cat > "$W/fake_cpuinfo" <<EOF
processor	: 0
BogoMIPS	: 108.00
Features	: $FEATURES
CPU implementer	: 0x41
CPU architecture: 8
CPU variant	: 0x0
CPU part	: 0xd08
CPU revision	: 3

EOF
for f in possible present online kernel_max; do echo 0 > "$W/fake_sys/$f"; done
mkdir -p "$W/fake_sys/cpu0/topology" "$W/fake_sys/cpu0/cpufreq"
echo 0 > "$W/fake_sys/cpu0/topology/core_id"; echo 0 > "$W/fake_sys/cpu0/topology/physical_package_id"
echo 1500000 > "$W/fake_sys/cpu0/cpufreq/cpuinfo_max_freq"

in_arm() {  # run a command in the rootfs, in a private mount namespace with the fake CPU
  unshare -m bash -c "
    mount -t proc proc '$ROOTFS/proc' && mount --bind '$W/fake_cpuinfo' '$ROOTFS/proc/cpuinfo'
    mkdir -p '$ROOTFS/sys' && mount -t tmpfs tmpfs '$ROOTFS/sys' && mkdir -p '$ROOTFS/sys/devices/system/cpu'
    mount --bind '$W/fake_sys' '$ROOTFS/sys/devices/system/cpu'
    chroot '$ROOTFS' $*"
}

if [ ! -x "$W/venv/bin/python" ]; then
  in_arm /usr/bin/python3 -m venv /parity/venv
  in_arm /parity/venv/bin/pip install -q --no-index --find-links /parity/wheels "onnxruntime==$ORT" "numpy==$NP"
fi

cat > "$W/run.py" <<'EOF'
import sys, numpy as np, onnxruntime as ort
so = ort.SessionOptions(); so.intra_op_num_threads = 1
s = ort.InferenceSession(sys.argv[1], so, providers=["CPUExecutionProvider"])
feeds = dict(np.load(sys.argv[2]))
out = s.run(None, feeds)
np.savez(sys.argv[3], *out)
print(ort.__version__, ort.get_device(), [o.shape for o in out])
EOF

status=0
i=0
for model in "$@"; do
  i=$((i + 1))
  name="$i-$(basename "$model")"  # numbered: artifacts of several exports share file names
  cp "$model" "$W/$name"
  python3 - "$W/$name" "$W/$name.in.npz" "$W/$name.x86.npz" "$FRAMES" <<'EOF'
import sys, numpy as np, onnxruntime as ort
so = ort.SessionOptions(); so.intra_op_num_threads = 1
s = ort.InferenceSession(sys.argv[1], so, providers=["CPUExecutionProvider"])
rng, T = np.random.default_rng(0), int(sys.argv[4])
feeds = {}
for i in s.get_inputs():
    dims = [d if isinstance(d, int) else None for d in i.shape]
    if "int" in i.type:
        feeds[i.name] = np.full([dims[0] or 1], T, np.int64)
    else:
        feeds[i.name] = rng.standard_normal([dims[0] or 1, T, dims[2] or 80]).astype(np.float32)
np.savez(sys.argv[2], **feeds)
np.savez(sys.argv[3], *s.run(None, feeds))
EOF
  echo "== $name under qemu-aarch64 -cpu $QEMU_CPU (slow)"
  in_arm /parity/venv/bin/python /parity/run.py "/parity/$name" "/parity/$name.in.npz" "/parity/$name.arm.npz"
  python3 - "$W/$name.x86.npz" "$W/$name.arm.npz" "$ATOL" "$name" "$AGREE" <<'EOF' || status=1
import sys, numpy as np
a, b = np.load(sys.argv[1]), np.load(sys.argv[2])
worst = max(float(np.max(np.abs(a[k].astype(np.float64) - b[k].astype(np.float64)))) for k in a.files)
agree = [float((a[k].argmax(-1) == b[k].argmax(-1)).mean()) for k in a.files if a[k].ndim == 3]
ok = worst <= float(sys.argv[3]) or bool(agree and min(agree) >= float(sys.argv[5]))
print(f"{sys.argv[4]}: max |x86 - arm64| = {worst:.2e} (tolerance {sys.argv[3]}), best token agrees on "
      f"{100 * min(agree):.2f} % of frames (need {sys.argv[5]}) -> {'OK' if ok else 'DIFFERS'}" if agree else
      f"{sys.argv[4]}: max |x86 - arm64| = {worst:.2e} -> {'OK' if ok else 'DIFFERS'}")
sys.exit(0 if ok else 1)
EOF
done
exit $status
