#!/usr/bin/env bash
# Builds the libFuzzer targets (Fuzz/.build/debug/Fuzz*) with AddressSanitizer, under the shared build lock.
# The project's C shim (the HDF5 zstd filter) is instrumented too, through -Xcc.
set -euo pipefail
cd "$(dirname "$0")"
exec flock /tmp/swift-build.lock swift build --package-path . -c debug \
    -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library \
    -Xcc -fsanitize=fuzzer-no-link,address "$@"
