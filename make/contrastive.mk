# Contrastive representation learning: SimCLR vs SupCon vs RE-OT contrastive on Fashion-MNIST-LT.
.PHONY: contrastive-demo

contrastive-demo: install data-fmnist  ## SimCLR vs SupCon vs RE-OT contrastive on Fashion-MNIST-LT, 3 seeds × 20 epochs, linear probe (CPU) -> results/contrastive/
	WANDB_MODE=$${WANDB_MODE:-disabled} $(PY) experiments/contrastive/demo.py --seeds 0 1 2 --epochs 20 --out results/contrastive
