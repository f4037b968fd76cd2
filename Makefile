# The two set-up commands of the README: `make demo` (the rig on the simulated source) and
# `make test`. Both create/refresh the virtualenv first; later runs skip what is installed.
VENV ?= .venv
PY := $(VENV)/bin/python
# keep DDS discovery on this machine (tests and demo never need the network)
export ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST
export PYTHONPATH := $(CURDIR)$(if $(PYTHONPATH),:$(PYTHONPATH))

.PHONY: venv demo test lint model ablation bench-inference bench bench-gpu gpu-check bench-transport bench-replay bench-faults soak fuzz

venv:
	@bash scripts/bootstrap.sh $(VENV)

# simulate the rig once (cached under output/sim_cache) and replay it through the graph
demo: venv
	$(PY) -m evseg_ros.cli demo --output output/demo

test: venv
	$(PY) -m pytest -q --import-mode=importlib -p no:cacheprovider test

lint: venv
	$(PY) -m ruff check evseg_ros test scripts launch  # settings: .ruff.toml

# what the accumulator node runs on a CPU: numpy reference vs host path vs fused path (M ev/s)
bench: venv
	$(PY) scripts/bench_events.py

# on a CUDA machine: GPU decode+accumulate, every GPU backend x MiT B0/B2/B5 x 512x512/1034x617,
# and frame->mask through the graph at 30 and 60 Hz (output/bench/*.json, ros2_benchmark names)
bench-gpu: venv
	$(PY) scripts/bench_events_gpu.py
	$(PY) scripts/bench_inference.py --matrix --mit b0,b2,b5 --repeats 50 \
		--backends tensorrt/cuda,pytorch/cuda/fp16,onnxruntime/cuda,onnxruntime/cpu \
		--json output/bench/inference_gpu.json
	$(PY) scripts/bench_replay.py --hz 30,60 --device cuda --json output/bench/replay_gpu.json

# event transport driver -> accumulator: in-process, Fast DDS shared memory / UDP, decode-only
bench-transport: venv
	$(PY) scripts/bench_transport.py

# end to end: the demo recording replayed at several rates vs lockstep (masks %, latency, mIoU)
bench-replay: venv
	$(PY) scripts/bench_replay.py

# long run: the demo recording looped in realtime for 30 min; RSS, queues, drops, latency over time
# (output/soak/soak.json + .png); a shorter one: scripts/soak.py --minutes 3 --interval 15
soak: venv
	$(PY) scripts/soak.py

# evseg eval with events off, frames off and lost packets, quiet and beside two busy processes
bench-faults: venv
	$(PY) scripts/bench_faults.py

# 10^6 mutated packets through each CPU event decoder: no exception, exact counters, peak memory
fuzz: venv
	$(PY) scripts/fuzz_decoders.py

# the shipped model: CACD-B0 trained on simulated recordings (about an hour on 2 CPU cores), exported
model: venv
	$(PY) -m evseg_ros.cli train --config config/train/cacd_b0_sim.yaml
	$(PY) -m evseg_ros.cli export --checkpoint output/train/cacd_b0_sim/last.pt \
		--output models/cacd_b0_sim.onnx --weights-output models/cacd_b0_sim.pt --overwrite
	$(PY) scripts/model_card.py --model models/cacd_b0_sim.onnx --output models/cacd_b0_sim_metrics.json

# image only / event only / fused / +HFCA / +JBCD / CACD, 3 training seeds each (models/cacd_ablation.md)
ablation: venv
	$(PY) scripts/run_ablation.py --output models --overwrite

# CACD fused vs image-only on ONNX Runtime CPU, 2 threads: 'ratio fused/image_only WxH' lines;
# then the CPU backends' latency table (the GPU ones: make bench-gpu)
bench-inference: venv
	$(PY) scripts/bench_inference.py
	$(PY) scripts/bench_inference.py --matrix --json output/bench/inference_cpu.json

# the one script to run on a GPU machine: CUDA tests, GPU timings against the goals, TensorRT import
gpu-check:
	bash scripts/gpu_check.sh
