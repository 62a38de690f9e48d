#!/usr/bin/env bash
# Builds the libFuzzer targets (Fuzz/.build/release/Fuzz*) with AddressSanitizer, under the shared build lock.
# The project's C shim (the HDF5 zstd filter) is instrumented too, through -Xcc. Release for speed, with
# -enable-testing for the @testable imports of internal parsers (ZarrArray).
set -euo pipefail
cd "$(dirname "$0")"
exec flock /tmp/longcrawl-build.lock swift build --package-path . -c release -Xswiftc -enable-testing \
    -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library \
    -Xcc -fsanitize=fuzzer-no-link,address "$@"
