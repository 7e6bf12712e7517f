# Mutation check: the one-line bugs of tests/mutations.yaml, each applied to a scratch copy, must fail their tests.
.PHONY: mutation-check

mutation-check: install  ## apply each bug of tests/mutations.yaml to a scratch copy and run its tests -> results/mutation/summary.md
	OMP_NUM_THREADS=1 $(PY) experiments/mutation/run.py
