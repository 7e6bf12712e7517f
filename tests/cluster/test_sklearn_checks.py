"""scikit-learn's estimator checks on DBOTClustering (Euclidean space).

space="wasserstein" is not run through them: the checks feed negative and all-zero rows,
which are not histograms and are rejected by design.
"""
import warnings

from sklearn.utils.estimator_checks import parametrize_with_checks

from otcls.cluster import DBOTClustering


@parametrize_with_checks([DBOTClustering(n_clusters=3, size_min=0.05, random_state=0, max_iter=20)])
def test_sklearn_compatible(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check(estimator)
