#!/usr/bin/env bash
# The GPU checks, prepared to run in one go on a CUDA machine (needs data/MNIST/raw):
# the default config for 2 epochs with amp bf16, amp fp16 and torch.compile, then
# test.py on each result; last, the benchmark's table. Prints one summary line per run.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-saved/gpu_check}
epochs=${EPOCHS:-2}
variants=${VARIANTS:-amp_bf16 amp_fp16 compile}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || echo "no nvidia-smi: not a CUDA machine"
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"

declare -A overrides=([amp_bf16]='+trainer.amp="bf16"' [amp_fp16]='+trainer.amp="fp16"' [compile]='+trainer.compile=true')
for name in $variants; do
    override=${overrides[$name]}
    start=$(date +%s)
    python train.py -c config.json -o trainer.epochs="$epochs" -o "trainer.save_dir=\"$out/$name\"" \
        -o "$override" > "$out.$name.train.log" 2>&1 || { echo "$name: train.py failed"; tail -5 "$out.$name.train.log"; continue; }
    end=$(date +%s)
    best=$(ls -d "$out/$name"/models/*/*/ | tail -1)model_best.pth
    python test.py -r "$best" > "$out.$name.test.log" 2>&1 || { echo "$name: test.py failed"; continue; }
    echo "$name: $((end - start)) s for $epochs epochs (process wall time);" \
        "$(tail -2 "$(dirname "$best")/metrics.csv" | cut -d, -f1,6,9 | tr '\n' ' ')(epoch,val_accuracy,epoch_time);" \
        "test: $(python -c "import json,sys; r=json.load(open(sys.argv[1])); print(r['metrics'])" "${best%.pth}.test.json")"
done

[ -n "${SKIP_BENCH:-}" ] || python tests/benchmarks/bench_train.py --reps 3 --accuracy-epochs 3 --out "$out/bench_train.json"
