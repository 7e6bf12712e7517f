# Long-tailed instance segmentation (LVIS format) — see docs/lvis.md.
LVIS_DEMO_DIR ?= data/lvis_demo
LVIS_LOSSES ?= ce focal ldam logit_adjust cb_ce cb_focal balanced_softmax reot_ratio dbot

.PHONY: lvis-demo-data lvis-demo lvis

$(LVIS_DEMO_DIR)/annotations/lvis_v1_train.json: | install data-fmnist
	$(VENV)/bin/otcls make-lvis-demo --out $(LVIS_DEMO_DIR)

lvis-demo-data: $(LVIS_DEMO_DIR)/annotations/lvis_v1_train.json  ## write the offline LVIS-format demo set (Fashion-MNIST items)

lvis-demo: install lvis-demo-data  ## offline LVIS demo: Mask R-CNN per box loss on CPU, AP table in results/lvis_demo/
	WANDB_MODE=$${WANDB_MODE:-disabled} OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} \
	  $(PY) experiments/lvis/run_demo.py --jobs 2 --losses $(LVIS_LOSSES) --data-root $(LVIS_DEMO_DIR) \
	  --runs runs/lvis_demo --out results/lvis_demo

lvis: install  ## real LVIS v1 recipe (GPU; data in data/lvis, see docs/lvis.md): every loss, AP table in results/lvis_v1/
	$(PY) experiments/lvis/run_demo.py --base lvis_v1 --set lvis_v1 --losses $(LVIS_LOSSES) --data-root data/lvis \
	  --runs runs/lvis_v1 --out results/lvis_v1
