# Contrastive representation learning (issue 8): SimCLR vs SupCon vs RE-OT contrastive on Fashion-MNIST-LT.
.PHONY: contrastive-demo

contrastive-demo: install data-fmnist  ## SimCLR vs SupCon vs RE-OT contrastive on Fashion-MNIST-LT, 3 seeds, linear probe (CPU, ~20 min) -> results/contrastive/
	WANDB_MODE=$${WANDB_MODE:-disabled} $(PY) experiments/contrastive/demo.py --seeds 0 1 2 --epochs 10 --out results/contrastive
