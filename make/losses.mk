# Losses, TransportHead inference, λ(t) schedule, EM prior estimation.
.PHONY: test-losses prior-shift

test-losses: install  ## run the loss / head / schedule / prior-estimation tests
	$(PY) -m pytest -q tests/test_losses.py tests/test_loss_gradcheck.py tests/test_inverse_ot.py tests/test_head.py tests/test_head_ddp.py tests/test_schedule.py tests/test_prior_estimation.py

prior-shift: install  ## synthetic label-shift table + plot for every inference mode -> results/losses/
	$(PY) experiments/losses/prior_shift.py --out results/losses
