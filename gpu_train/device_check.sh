#!/usr/bin/env bash
# Device check for gpu_train on a machine with one CUDA GPU; < 8 minutes on one H200.
#
#   bash gpu_train/device_check.sh            (from anywhere; PYTHON=... to pick the interpreter)
#
# 1. The trainer tests with their models on CUDA (TWEETMILL_TEST_DEVICE=cuda): flex attention
#    against the dense mask, training, exact-ish resume, CLI, on bf16 autocast.
# 2. A timed GPT-2 124M run (bf16, torch.compile, fused AdamW, flex attention, 512Ki-token batches)
#    on 1M synthetic tweets it writes itself, then the steady-state tokens/s and MFU
#    (6·N·T + attention FLOPs against 989 TFLOP/s for H100/H200; target MFU >= 45%).
# Needs torch (CUDA), numpy, pyarrow; pytest and tokenizers only for part 1 (skipped without pytest).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
T0=$(date +%s)

# Import tweetmill.gpu_train and tweetmill.schemas from this checkout without installing it.
if ! $PY -c "import tweetmill.gpu_train.data, tweetmill.schemas" 2>/dev/null; then
  mkdir -p "$WORK/pkg/tweetmill"
  ln -s "$PWD/gpu_train" "$WORK/pkg/tweetmill/gpu_train"
  ln -s "$PWD/schemas" "$WORK/pkg/tweetmill/schemas"
  export PYTHONPATH="$WORK/pkg${PYTHONPATH:+:$PYTHONPATH}"
fi
$PY -c "
import torch, numpy, pyarrow
print('torch', torch.__version__, 'cuda', torch.version.cuda, '|', torch.cuda.get_device_name(0),
      '| numpy', numpy.__version__, '| pyarrow', pyarrow.__version__)
" || { echo "FAIL: torch with CUDA, numpy and pyarrow are needed"; exit 1; }

echo "== 1/2 trainer tests on CUDA"
TESTS=skipped
if $PY -c "import pytest" 2>/dev/null; then
  if TWEETMILL_TEST_DEVICE=cuda TWEETMILL_SYNTHETIC_TEXT=1 timeout 170 \
      $PY -m pytest -q -x -p no:cacheprovider tests/test_train.py 2>&1 | tail -25; then
    TESTS=passed
  else
    TESTS=FAILED
  fi
else
  echo "pytest is not installed: tests skipped"
fi
echo "tests: $TESTS ($(( $(date +%s) - T0 )) s so far)"

echo "== 2/2 timed GPT-2 124M run"
$PY -c "
import sys; sys.path.insert(0, 'tests')
from train_fixtures import write_synthetic_shards
write_synthetic_shards('$WORK/shards', 1_000_000, vocab_size=50_257, num_shards=4)
" || { echo "FAIL: could not write synthetic shards"; exit 1; }
timeout 280 $PY -m tweetmill.gpu_train "$WORK/shards" --model gpt2-124m --compile --device cuda \
  --steps 5000 --batch-tokens 524288 --micro-batch ${MICRO_BATCH:-64} --time-limit 170 \
  --log-interval 5 --val-fraction 0 --ckpt-interval 0 --keep-checkpoints 1 \
  --run-dir "$WORK/runs" --name check 2>&1 | grep -v '^{' | tail -15
RUN=${PIPESTATUS[0]}
$PY - "$WORK/runs/check/metrics.jsonl" <<'EOF'
import json, statistics, sys
try:
    lines = [json.loads(x) for x in open(sys.argv[1]) if '"loss"' in x]
except OSError:
    sys.exit("FAIL: the run wrote no metrics")
steady = lines[2:] or lines  # the first windows include compilation
if not steady:
    sys.exit("FAIL: no training steps logged")
med = lambda key: statistics.median(x[key] for x in steady if key in x)
print(f"steps {lines[-1]['step']}, loss {lines[0]['loss']:.3f} -> {lines[-1]['loss']:.3f}")
print(f"steady state over {len(steady)} windows: {med('tokens_per_s') / 1e3:.0f}k tokens/s, "
      f"{med('step_ms'):.0f} ms/step, data wait {100 * med('data_wait'):.2f}%")
if any("mfu" in x for x in steady):
    mfu = med("mfu")
    print(f"MFU {100 * mfu:.1f}% (target 45%): {'ok' if mfu >= 0.45 else 'BELOW TARGET'}")
else:
    print("MFU: unknown GPU, pass --peak-tflops")
EOF
echo "run exit status $RUN; tests $TESTS; total $(( $(date +%s) - T0 )) s"
