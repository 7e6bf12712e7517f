# DB-OT clustering: experiments and the papers' OT figures.
.PHONY: cluster-demo cluster-bench figures

cluster-demo: install  ## DB-OT clustering: Gaussian mixture + digits (tables/plots in results/cluster)
	$(PY) experiments/cluster/gmm.py
	$(PY) experiments/cluster/digits.py

cluster-bench: install  ## DB-OT clustering vs k-means-constrained, 20,000 points x 10 clusters
	$(PY) experiments/cluster/bench_kmc.py

# The t-SNE figure needs a trained model: by default the `make demo` RE-OT run (seed 0);
# CKPT=path picks a checkpoint, FIGURES_RUNS=dir another results/<...>/runs folder. A figure whose
# input is missing is reported and the others are still made; the exit status is non-zero then.
figures: install data-fmnist  ## RE-OT paper figures (plans vs eps, deblurred barycenters + sharpness, proximal point, t-SNE of the demo model) in results/figures
	$(PY) experiments/figures/run_all.py $(if $(CKPT),--checkpoint $(CKPT),) $(if $(FIGURES_RUNS),--runs $(FIGURES_RUNS),)
