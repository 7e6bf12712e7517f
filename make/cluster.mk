# DB-OT clustering (issue 7): experiments and the papers' OT figures.
.PHONY: cluster-demo cluster-bench figures

cluster-demo: install  ## DB-OT clustering: Gaussian mixture + digits (tables/plots in results/cluster)
	$(PY) experiments/cluster/gmm.py
	$(PY) experiments/cluster/digits.py

cluster-bench: install  ## DB-OT clustering vs k-means-constrained, 20,000 points x 10 clusters
	$(PY) experiments/cluster/bench_kmc.py

figures: install  ## RE-OT paper figures (plans vs eps, deblurred barycenters, proximal point, t-SNE) in results/figures
	$(PY) experiments/figures/reot_figures.py
	$(PY) experiments/figures/tsne_features.py $(if $(CKPT),--checkpoint $(CKPT),)
