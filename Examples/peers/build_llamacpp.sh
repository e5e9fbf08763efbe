#!/usr/bin/env bash
# Builds the llama.cpp that llama_cpp_python 0.3.36 vendors (ggml-org/llama.cpp 0c1e57098), CPU only,
# for the side-by-side comparison in compare_peers.sh. Everything goes to $PEERS (default /work/peers),
# outside the repository. Idempotent: a finished build is kept and the script exits at once.
#
#   Examples/peers/build_llamacpp.sh            # ~8 min on 2 cores
#   PEERS=/tmp/peers JOBS=4 Examples/peers/build_llamacpp.sh
#
# Needs: cmake, a C/C++ compiler, pip (the sdist comes from PyPI through pip). Set LOCK to a lock file
# to build under flock (default /work/.swift-build.lock when it exists; LOCK= disables it).
set -euo pipefail

VERSION=0.3.36
COMMIT=0c1e57098
PEERS=${PEERS:-/work/peers}
JOBS=${JOBS:-2}
PIP=${PIP:-pip}
if [ -z "${LOCK+set}" ]; then LOCK=/work/.swift-build.lock; [ -e "$LOCK" ] || LOCK=; fi

SRC="$PEERS/llama_cpp_python-$VERSION/vendor/llama.cpp"
BUILD="$PEERS/llama.cpp-build"
STAMP="$BUILD/.built-$COMMIT"

if [ -f "$STAMP" ] && [ -x "$BUILD/bin/llama-bench" ] && [ -x "$BUILD/bin/llama-quantize" ]; then
  echo "build_llamacpp: already built ($BUILD/bin, llama.cpp $COMMIT)"
  exit 0
fi

command -v cmake >/dev/null || { echo "build_llamacpp: cmake not found (Debian: apt-get install -y cmake)" >&2; exit 1; }
mkdir -p "$PEERS/dl"
SDIST="$PEERS/dl/llama_cpp_python-$VERSION.tar.gz"
if [ ! -f "$SDIST" ]; then
  "$PIP" download --no-binary :all: --no-deps "llama_cpp_python==$VERSION" -d "$PEERS/dl"
fi
if [ ! -f "$SRC/CMakeLists.txt" ]; then
  tar -xzf "$SDIST" -C "$PEERS"
fi
# The sdist carries the submodule's git metadata; check that it is the commit we expect.
HEAD_FILE="$PEERS/llama_cpp_python-$VERSION/.git/modules/vendor/llama.cpp/HEAD"
if [ -f "$HEAD_FILE" ] && ! grep -q "^$COMMIT" "$HEAD_FILE"; then
  echo "build_llamacpp: vendored llama.cpp is $(cat "$HEAD_FILE"), expected $COMMIT" >&2; exit 1
fi

locked() { if [ -n "$LOCK" ]; then flock "$LOCK" "$@"; else "$@"; fi; }

# CPU only: no GPU back ends, no network (curl/OpenSSL) and only the tools the comparison uses.
# GGML_NATIVE builds for this machine's instruction set, as plmq's kernels pick theirs at run time.
cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release \
  -DGGML_NATIVE=ON -DGGML_CUDA=OFF -DGGML_VULKAN=OFF -DGGML_METAL=OFF -DGGML_OPENMP=ON \
  -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
  -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_BUILD_TOOLS=ON -DBUILD_SHARED_LIBS=OFF >/dev/null
locked cmake --build "$BUILD" --config Release -j "$JOBS" --target llama-bench llama-quantize
touch "$STAMP"
echo "build_llamacpp: built $BUILD/bin/llama-bench and llama-quantize (llama.cpp $COMMIT)"
