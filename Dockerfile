# edgekd images (multi-stage).
#
#   runner (linux/arm64, the default target): only the benchmark runner + numpy + onnxruntime +
#   ai-edge-litert -- no torch. Build it for a Raspberry Pi / arm64 board and run it on a mounted
#   artifact:
#     docker buildx build --platform linux/arm64 --target runner -t edgekd-runner:arm64 .
#     docker run --rm -v "$PWD/artifacts:/models:ro" edgekd-runner:arm64 --model /models/student.onnx --seconds 10
#   edgekd (the build platform, x86_64): the whole toolkit with the CPU torch wheel, for
#   training/export on a workstation:
#     docker buildx build --target edgekd -t edgekd:x86 .
#
# Without a Docker engine, scripts/build_arm64_image.sh builds the runner stage with buildah
# against a locally made arm64 Debian base (registries unreachable).

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

# ---------------------------------------------------------------- toolkit (build platform)
FROM --platform=$BUILDPLATFORM ${PYTHON_IMAGE} AS edgekd
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY edgekd ./edgekd
COPY devices ./devices
# torch 2.13.0 from the CPU index: the PyPI default would pull a multi-GB CUDA build.
RUN pip install --no-cache-dir --extra-index-url https://download.pytorch.org/whl/cpu "torch==2.13.0" \
 && pip install --no-cache-dir /src
# The runner (and the two files copied beside it) must import without torch or the rest of edgekd:
# check it here, on the build side.
RUN python -c "import ast, sys; ts = [ast.parse(open(f'edgekd/bench/{f}.py').read()) for f in ('runner', 'stream', 'labelled')]; \
mods = {a.name for t in ts for n in ast.walk(t) if isinstance(n, ast.Import) for a in n.names} | \
{n.module for t in ts for n in ast.walk(t) if isinstance(n, ast.ImportFrom) and n.module}; \
bad = [m for m in mods if m.split('.')[0] in ('torch', 'edgekd')]; sys.exit(f'runner imports {bad}' if bad else 0)"
ENTRYPOINT ["edgekd"]
CMD ["--help"]

# ---------------------------------------------------------------- on-device runner (target platform)
# Built on its own (--target runner) it needs nothing from the toolkit stage: the runner is three
# files that import only numpy + onnxruntime / ai-edge-litert (tests/test_bench.py checks that).
# A venv keeps pip away from the base's system Python (Debian-based images mark it externally managed).
FROM ${PYTHON_IMAGE} AS runner
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH
# Versions tested with the runner (shared/DESIGN.md); all three ship manylinux aarch64 wheels.
# Behind a TLS-intercepting proxy, lend pip the proxy's CA bundle for this step only (not kept in
# the image): --secret id=cacert,src=/etc/ssl/certs/ca-certificates.crt
RUN --mount=type=secret,id=cacert,required=false \
    if [ -f /run/secrets/cacert ]; then export PIP_CERT=/run/secrets/cacert; fi \
 && python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir "numpy==2.4.6" "onnxruntime==1.32.0" "ai-edge-litert==2.3.0" \
 && useradd --create-home --uid 1000 bench
# stream.py runs cache-aware streaming models, labelled.py scores --bundle: both beside the runner
COPY edgekd/bench/runner.py edgekd/bench/stream.py edgekd/bench/labelled.py /opt/edgekd/
USER 1000
WORKDIR /models
ENTRYPOINT ["/opt/venv/bin/python3", "/opt/edgekd/runner.py"]
CMD ["--help"]
