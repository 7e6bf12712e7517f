# Long-tailed image classification. Runs go to results/<benchmark>/runs/<method>/seed<s>.
SEEDS ?= 0 1 2
JOBS ?= 1
WANDB_MODE ?= offline
LT_METHODS := ce focal ldam ldam_drw logit_adjust cb_ce cb_focal balanced_softmax reot_ratio reot_teacher dbot
DEMO_METHODS := ce balanced_softmax reot_ratio dbot
DEMO_SEEDS ?= 0 1 2
DEMO_JOBS ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: demo cifar10-lt-cpu cifar10-lt cifar100-lt imagenet-lt bench-image-step bench-input-pipeline data-cifar

demo: install data-fmnist  ## offline Fashion-MNIST-LT, standard protocol (IF 100, 14,886 images): CE, Balanced Softmax, RE-OT, DB-OT fine-tuning × 3 seeds; headline table in results/demo/summary.md
	OMP_NUM_THREADS=1 WANDB_MODE=disabled $(PY) -m otcls.cli sweep --base configs/base/fmnist.yaml \
	  --methods $(foreach m,$(DEMO_METHODS),configs/fmnist_lt/$(m).yaml) --finetune dbot=ce \
	  --seeds $(DEMO_SEEDS) --jobs $(DEMO_JOBS) --out results/demo
	$(PY) -m otcls.cli report $(foreach m,$(DEMO_METHODS),results/demo/runs/$(m)/seed$(firstword $(DEMO_SEEDS))) --out results/demo/report > /dev/null
	@echo "headline: results/demo/summary.md  full matrix: results/demo/summary_full.md  numbers: results/demo/summary.json"
	@echo "plots: results/demo/per_class_vs_frequency.png results/demo/prior_shift.png results/demo/report/"

# GPUS=0,1,2,3 spreads the runs over those GPUs (GPUS_PER_RUN each, RUNS_PER_GPU runs sharing each at once),
# SLURM=1 submits them as SLURM jobs instead (PARTITION, ACCOUNT, QOS, TIME minutes, MEM GB, SLURM_GPUS and
# SBATCH="key=value ..." set what each job asks for; the DB-OT and teacher runs wait on their seed's CE job),
# DATA_ROOT points at the data folder,
# DRY_RUN=1 prints every run's environment and command (with SLURM=1 also the sbatch parameters and the
# dependency graph) without running anything.
GPUS ?=
GPUS_PER_RUN ?= 1
RUNS_PER_GPU ?= 1
SLURM ?=
PARTITION ?=
ACCOUNT ?=
QOS ?=
TIME ?= 1440
MEM ?=
SLURM_GPUS ?= 1
SBATCH ?=
DATA_ROOT ?=
DRY_RUN ?=
SLURM_FLAGS = --slurm --slurm-time $(TIME) --slurm-gpus-per-task $(SLURM_GPUS) $(if $(PARTITION),--slurm-partition $(PARTITION),) \
  $(if $(ACCOUNT),--slurm-account $(ACCOUNT),) $(if $(QOS),--slurm-qos $(QOS),) $(if $(MEM),--slurm-mem $(MEM),) \
  $(if $(SBATCH),--sbatch $(SBATCH),)
SWEEP_FLAGS = $(if $(SLURM),$(SLURM_FLAGS),$(if $(GPUS),--gpus $(GPUS) --gpus-per-run $(GPUS_PER_RUN) --runs-per-gpu $(RUNS_PER_GPU),--jobs $(JOBS))) \
  $(if $(DRY_RUN),--dry-run,)
DATA_FLAGS = $(if $(DATA_ROOT),--data.init_args.root $(DATA_ROOT),)
# IF: imbalance factor of the CIFAR targets (200, as in the RE-OT paper's table; 100 and 10 are the other
# standard profiles). Results go to results/<benchmark>_if<IF>.
IF ?= 200

# $(1) benchmark name, $(2) base config, $(3) results folder, $(4) extra overrides (e.g. the imbalance factor).
# One sweep: the DB-OT fine-tuning and the RE-OT teacher of seed s both start from the CE run of seed s, and
# every method is in the one headline table.
define lt_benchmark
	$(if $(DRY_RUN),,$(PY) -m otcls.cli check-data --config configs/base/$(2).yaml configs/$(1)/data.yaml $(if $(DATA_ROOT),--root $(DATA_ROOT),) $(CHECK_FLAGS))
	WANDB_MODE=$(WANDB_MODE) $(PY) -m otcls.cli sweep --base configs/base/$(2).yaml configs/$(1)/data.yaml \
	  --methods $(foreach m,$(LT_METHODS),configs/$(1)/$(m).yaml) --finetune dbot=ce --teacher reot_teacher=ce \
	  --seeds $(SEEDS) $(SWEEP_FLAGS) --out $(3) -- $(DATA_FLAGS) $(4)
	$(if $(DRY_RUN)$(SLURM),,$(PY) -m otcls.cli report $(3)/runs/*/seed$(firstword $(SEEDS)) --out $(3)/report)
endef

cifar10-lt: install  ## CIFAR10-LT (IF=200 by default; 100, 10) × 11 methods × $(SEEDS); GPUS=0,1,.. or SLURM=1 PARTITION=..; DATA_ROOT=dir DRY_RUN=1
	$(call lt_benchmark,cifar10_lt,cifar,results/cifar10_lt_if$(IF),--data.init_args.imbalance_factor $(IF))

cifar100-lt: install  ## CIFAR100-LT (IF=200 by default; 100, 10) × 11 methods × $(SEEDS); same variables
	$(call lt_benchmark,cifar100_lt,cifar,results/cifar100_lt_if$(IF),--data.init_args.imbalance_factor $(IF))

# ImageNet-LT: DATA_ROOT holds the ImageNet-2012 images; LIST_DIR the three ImageNet_LT_*.txt lists
# (default: DATA_ROOT when that is given, else configs/imagenet_lt/data.yaml's data/imagenet_lt).
LIST_DIR ?=
IMAGENET_LISTS = $(or $(LIST_DIR),$(DATA_ROOT))
imagenet-lt: CHECK_FLAGS = $(if $(IMAGENET_LISTS),--set list_dir=$(IMAGENET_LISTS),)
imagenet-lt: install  ## ImageNet-LT × 11 methods (needs ImageNet + the ImageNet_LT lists, see docs/images.md); DATA_ROOT=images LIST_DIR=lists
	$(call lt_benchmark,imagenet_lt,imagenet,results/imagenet_lt,$(if $(IMAGENET_LISTS),--data.init_args.list_dir $(IMAGENET_LISTS),))

# The CIFAR10-LT protocol on 2 CPU cores: the shared method configs with the shorter schedule of
# configs/cifar10_lt_cpu/ (base.yaml after the data config, <method>.yaml after each method's config).
CPU_METHODS := ce balanced_softmax reot_ratio dbot
CPU_JOBS ?= $(DEMO_JOBS)
cifar10-lt-cpu: install  ## CIFAR10-LT IF 100 on 2 CPU cores (~45 min): CE, Balanced Softmax, RE-OT, DB-OT × 3 seeds; DATA_ROOT=folder holding cifar-10-batches-py/
	$(if $(DATA_ROOT),,$(error set DATA_ROOT to the folder holding cifar-10-batches-py/ (make data-cifar downloads it)))
	$(PY) -m otcls.cli check-data --config configs/base/cifar.yaml configs/cifar10_lt/data.yaml --root $(DATA_ROOT)
	OMP_NUM_THREADS=1 WANDB_MODE=$(WANDB_MODE) $(PY) -m otcls.cli sweep \
	  --base configs/base/cifar.yaml configs/cifar10_lt/data.yaml configs/cifar10_lt_cpu/base.yaml \
	  --methods $(foreach m,$(CPU_METHODS),configs/cifar10_lt/$(m).yaml) --method-overrides configs/cifar10_lt_cpu \
	  --finetune dbot=ce --seeds $(SEEDS) --jobs $(CPU_JOBS) $(if $(DRY_RUN),--dry-run,) --out results/cifar10_lt_cpu \
	  -- --data.init_args.root $(DATA_ROOT) --data.init_args.download false
	@echo "headline: results/cifar10_lt_cpu/summary.md  learning curves: results/cifar10_lt_cpu/learning_curves.md"

data-cifar: install  ## download CIFAR-10 and CIFAR-100 (python batches) into DATA_ROOT (default data/cifar); needs network
	$(PY) -m otcls.cli check-data --config configs/base/cifar.yaml configs/cifar10_lt/data.yaml --root $(or $(DATA_ROOT),data/cifar)
	$(PY) -m otcls.cli check-data --config configs/base/cifar.yaml configs/cifar100_lt/data.yaml --root $(or $(DATA_ROOT),data/cifar)

bench-image-step: install  ## training step time per loss vs CE (ResNet32, batch 512, 100 classes)
	$(PY) experiments/images/bench_step_time.py --out results/bench_image_step

bench-input-pipeline: install  ## training-input images/s per core, device vs worker pipeline, and their share of a ResNet-32 step; DATA_ROOT=CIFAR folder (else random pixels)
	OMP_NUM_THREADS=1 $(PY) experiments/images/bench_input_pipeline.py $(if $(DATA_ROOT),--data-root $(DATA_ROOT),) --out results/bench
