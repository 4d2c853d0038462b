#!/usr/bin/env bash
# GPU check: training throughput, input pipeline vs training, sweep overhead; mixed precision + XLA, < 5 min.
#
#   benchmarks/gpu_check.sh [--allow-cpu] [--quick] [OUT_DIR]
#
# OUT_DIR: $GPU_CHECK_OUT or gpu_check_out/ (a .json and a .log per step). Needs TensorFlow with CUDA
# (pip install 'tensorflow[and-cuda]'); fails when TensorFlow sees no GPU unless --allow-cpu (a dry run).
# --quick: a few steps per figure (dry runs). $PYTHON: the interpreter (default .venv/bin/python).
# $GPU_CHECK_DATA: the image-folder archive (default ../shared/data/cifar10-jpeg-train.tar.gz).
# $GPU_CHECK_TIMEOUT_SCALE: multiplies each step's time limit (default 1; e.g. 3 for a CPU dry run).
set -euo pipefail
cd "$(dirname "$0")/.."
allow_cpu=0 quick=0 out="${GPU_CHECK_OUT:-gpu_check_out}"
for arg in "$@"; do
  case "$arg" in
    --allow-cpu) allow_cpu=1 ;;
    --quick) quick=1 ;;
    -h | --help) sed -n '2,10p' "$0" | cut -c3-; exit 0 ;;
    -*) echo "unknown option: $arg (see --help)" >&2; exit 2 ;;
    *) out="$arg" ;;
  esac
done
py="${PYTHON:-.venv/bin/python}"; [[ -x "$py" ]] || py=python3
data="${GPU_CHECK_DATA:-../shared/data/cifar10-jpeg-train.tar.gz}"
export TF_FORCE_GPU_ALLOW_GROWTH=true  # the sweeper and its worker processes share the GPU
mkdir -p "$out"
start=$SECONDS

command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv \
  | tee "$out/nvidia-smi.csv" || echo "nvidia-smi: not found or failed"
gpus=$("$py" -c 'import experiments, tensorflow as tf
cuda, gpus = tf.sysconfig.get_build_info().get("cuda_version", "none"), tf.config.list_physical_devices("GPU")
print(f"TensorFlow {tf.__version__}, built with CUDA {cuda}, GPUs {[g.name for g in gpus]}\n{len(gpus)}")')
echo "${gpus%$'\n'*}"
if [[ "${gpus##*$'\n'}" == 0 && $allow_cpu == 0 ]]; then
  echo "ERROR: TensorFlow sees no GPU. Check nvidia-smi and install 'tensorflow[and-cuda]' in the venv;" \
    "or pass --allow-cpu for a dry run." >&2
  exit 1
fi

# On a GPU: batches sized for it (500 divides the 18,000 training images: XLA compiles one shape).
tput=(--models resnet20 resnet50 --batch 1024 256 --steps 30 --rounds 3)
pipe=(--batch 500 --samples 20000 --epochs 3 --train-epochs 3 --no-in-memory)
sweep=(hydra.sweeper.n_trials=3 trainer.epochs=4) cases=(digits folder folder_aug synthetic)
if ((quick)); then
  tput=(--models resnet20 --batch 32 --steps 2 --rounds 1)
  pipe=(--batch 64 --samples 600 --epochs 1 --train-epochs 2 --no-in-memory)
  sweep=(hydra.sweeper.n_trials=2 trainer.epochs=2) cases=(digits folder_aug)
fi
[[ -e "$data" ]] || { echo "no $data: image-folder cases skipped"; cases=(digits synthetic); }

declare -A status
step() {  # step NAME SECONDS CMD...: run under a time limit, log to OUT_DIR, record the outcome, carry on
  local name=$1 limit=$(($2 * ${GPU_CHECK_TIMEOUT_SCALE:-1})) rc=0; shift 2
  echo; echo "== $name (limit ${limit}s): $*"
  timeout -k 5 "$limit" "$@" 2>&1 | tee "$out/$name.log" || rc=$?
  status[$name]=$( ((rc == 0)) && echo ok || { ((rc == 124 || rc == 137)) && echo "TIMEOUT ${limit}s" || echo "FAILED rc=$rc"; })
}
step throughput 100 "$py" benchmarks/throughput.py "${tput[@]}" --precision mixed_float16 --jit --json "$out/throughput.json"
step input_pipeline 110 "$py" benchmarks/input_pipeline.py --cases "${cases[@]}" --data "$data" "${pipe[@]}" \
  --precision mixed_float16 --jit --json "$out/input_pipeline.json"
step sweep_overhead 70 "$py" benchmarks/sweep_overhead.py --json "$out/sweep_overhead.json" "${sweep[@]}" \
  trainer.mixed_precision=mixed_float16 trainer.jit_compile=true

echo; echo "== summary: $((SECONDS - start)) s in all (target < 300 s); files in $out/"
for name in throughput input_pipeline sweep_overhead; do echo "  $name: ${status[$name]}"; done
"$py" - "$out" << 'EOF' | tee "$out/summary.txt"
import json, sys
from pathlib import Path
load = lambda name: json.loads(p.read_text()) if (p := Path(sys.argv[1]) / f"{name}.json").exists() else {}
for r in load("throughput").get("results", []):
    print(f"  {r['model']} batch {r['batch']}: ours {r['ours_images_per_s']:,.0f} img/s, keras {r['keras_images_per_s']:,.0f}, ratio {r['ratio']:.3f}")
for r in load("input_pipeline").get("results", []):
    print(f"  {r['case']}: pipeline {r['pipeline_images_per_s']:,.0f} img/s, training {r['train_images_per_s']:,.0f}, ratio {r['ratio']:.1f} (>= 5)")
if s := load("sweep_overhead"):
    print(f"  sweep: {s['trials']} trials, overhead {s['overhead_share']:.1%}, with tracing {s['overhead_share_with_tracing']:.1%} (<= 5%)")
EOF
[[ " ${status[*]} " == " ok ok ok " ]]
