#!/usr/bin/env bash
# ML-1M SASRec training epochs on one GPU with the JAX backend (issue 20, item 5): the same
# benchmark as `python benchmarks/speed.py train --models sasrec`, in one short call of a lent
# GPU machine, where JAX with CUDA, numpy and pandas are installed but not TensorFlow, Keras
# or keras-seqrec's other needs, and where nothing can be downloaded.
#
# Prepare on the development machine, once, from the repository root:
#
#   echo /.whl/ >> .git/info/exclude; echo /.gpu-data/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
#       --platform manylinux2014_x86_64 -d .whl keras==3.15.1 namex optree
#   mkdir -p .gpu-data/ml-1m && cp ../shared/data/ml-1m/ml-1m.txt.gz .gpu-data/ml-1m/
#
# then run `bash benchmarks/gpu_sasrec.sh` there with `.whl` and `.gpu-data` carried. The first
# epoch compiles every batch shape and is not reported; the JSON (seconds per epoch, the GPU's
# name) lands in benchmarks/results/speed/ and in $OUT. EPOCHS (default 4) sets the epochs.
# Without .whl (here, on the CPU, for a dry run) it uses the installed packages.
set -euo pipefail
cd "$(dirname "$0")/.."
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:$PWD"
else
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1
data=$([ -d .gpu-data ] && echo .gpu-data || echo ../shared/data)
python3 -c "import jax; print('devices:', jax.devices())"
command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv
python3 benchmarks/speed.py train --models sasrec --epochs "${EPOCHS:-4}" --data-dir "$data"
if [ -n "${OUT:-}" ]; then
  cp benchmarks/results/speed/train_ml1m_sasrec_*.json benchmarks/SPEED.md "$OUT"/
fi
