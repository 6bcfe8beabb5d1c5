#!/usr/bin/env bash
# usage: run.sh <attend-build-dir> <consumer-source-dir> <work-dir>
# Installs the build into a prefix, builds the consumer with find_package(attend)
# against it, and runs it.
set -euo pipefail
build=$1; consumer=$2; work=$3
rm -rf "$work"; mkdir -p "$work"
cmake --install "$build" --prefix "$work/prefix" >"$work/install.log"
test -x "$work/prefix/bin/attend"
test -f "$work/prefix/include/attend/io_error.h"
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S "$consumer" -B "$work/build" -G Ninja -DCMAKE_BUILD_TYPE=Release "${launcher[@]}" \
      -DCMAKE_PREFIX_PATH="$work/prefix" >"$work/configure.log"
cmake --build "$work/build" >"$work/build.log"
"$work/build/consumer" "$work"
