#!/usr/bin/env bash
# Calibration hygiene end to end: a Q4_K_M made with an imatrix calibrated on a text, evaluated on
# that text (the quant is flagged with its overlap share) and on an unrelated text (no flag).
#
#   1. llama-imatrix from the llama-cpp-python sdist of the installed version. Only the tool, its
#      `common` library and cpp-httplib are compiled; libllama/libggml are the installed wheel's
#      own (same sdist, same sonames), which saves compiling ~180 files on a small machine.
#   2. calibration text: the first 40 KB of Python 3.11's standard library sources; llama-imatrix
#      on Gemma 3 270M F16 (ctx 512, 16 chunks).
#   3. ggflip quantize --types Q4_K_M --imatrix; ggflip inspect shows the imatrix provenance.
#   4. ggflip kld (F16 baseline, the imatrix Q4_K_M) on the calibration text and on the GPL-3
#      text, both with --calibration set to the calibration text.
#
#   bash benchmarks/imatrix_flag.sh            # WORK=/tmp/calib, BASE=the demo F16
#
# Needs cmake, a C++ compiler and libssl-dev (cpp-httplib). Everything is written under $WORK.
set -euo pipefail

PY=${PY:-python}
WORK=${WORK:-/tmp/calib}
BASE=${BASE:-$HOME/.cache/ggflip/models/gemma-3-270m/gemma-3-270m-F16.gguf}
OTHER=${OTHER:-/usr/share/common-licenses/GPL-3}
JOBS=${JOBS:-2}
THREADS=${THREADS:-2}
mkdir -p "$WORK"
cd "$WORK"

# 1. llama-imatrix
VERSION=$("$PY" -c 'import llama_cpp; print(llama_cpp.__version__)')
LIB=$("$PY" -c 'import llama_cpp, pathlib; print(pathlib.Path(llama_cpp.__file__).parent / "lib")')
SRC=$WORK/sdist/llama_cpp_python-$VERSION
BUILD=$WORK/llama-build
if [ ! -x "$BUILD/bin/llama-imatrix" ]; then
  if [ ! -d "$SRC" ]; then
    "$PY" -m pip download "llama-cpp-python==$VERSION" --no-deps --no-binary :all: -d "$WORK/sdist"
    tar xzf "$WORK/sdist/llama_cpp_python-$VERSION.tar.gz" -C "$WORK/sdist"
  fi
  cmake -S "$SRC/vendor/llama.cpp" -B "$BUILD" -DLLAMA_CURL=OFF -DGGML_NATIVE=ON \
    -DCMAKE_BUILD_TYPE=Release -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_SERVER=OFF
  mkdir -p "$BUILD/bin"
  for f in "$LIB"/lib*.so.*.*; do cp "$f" "$BUILD/bin/"; done  # the wheel's libllama/libggml
  (cd "$BUILD/bin" && for f in lib*.so.*.*; do ln -sf "$f" "${f%.so.*}.so.0"; done)
  for t in vendor/cpp-httplib/CMakeFiles/cpp-httplib.dir common/CMakeFiles/llama-common-base.dir \
    common/CMakeFiles/llama-common.dir tools/imatrix/CMakeFiles/llama-imatrix.dir; do
    (cd "$BUILD" && nice -n 10 make -j"$JOBS" -f "$t/build.make" "$t/build")
  done
fi

# 2. the calibration text and the importance matrix
(set +o pipefail; cat /usr/lib/python3.11/*.py | head -c 40000) >stdlib-calib.txt  # cat: SIGPIPE
if [ ! -f imatrix.gguf ]; then
  nice -n 10 "$BUILD/bin/llama-imatrix" -m "$BASE" -f stdlib-calib.txt -o imatrix.gguf \
    -c 512 --chunks 16 -t "$THREADS" 2>imatrix.log
fi

# 3. the imatrix quant and its provenance
nice -n 10 "$PY" -m ggflip.cli.main quantize "$BASE" --types Q4_K_M --imatrix imatrix.gguf \
  --out q --no-models --threads "$THREADS"
QUANT=$(ls q/*Q4_K_M*.gguf)
"$PY" -m ggflip.cli.main inspect "$QUANT"

# 4. evaluated on its own calibration text, then on an unrelated one
cat >models.toml <<EOF
[llama]
n_threads = $THREADS

[sets.imatrix]
baseline = "$BASE"
quants = [{ path = "$WORK/$QUANT", label = "Q4_K_M imatrix" }]
EOF
for run in "same stdlib-calib.txt" "other $OTHER"; do
  set -- $run
  nice -n 10 "$PY" -m ggflip.cli.main kld --models models.toml --text "$2" \
    --calibration stdlib-calib.txt --ctx 512 --chunks 8 --cache-dir cache --out "$1.json" | tee "$1.txt"
done
grep -h -e "calibration" -e "imatrix" same.txt other.txt
