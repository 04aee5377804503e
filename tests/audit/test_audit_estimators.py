"""Estimators: exact recovery, simplex, equivariance, singular behaviour, oracles, bad input."""

from __future__ import annotations

import warnings
from contextlib import contextmanager

import numpy as np
import pytest
from audit_simulation import make_population, simulated_split
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize

from hf_fundamentals.audit import (
    ESTIMATORS,
    AuditWarning,
    Confusion,
    acc,
    cc,
    estimate_prior,
    llmsurgeon_repo,
    mlls_em,
    pacc,
    pcc,
    project_to_simplex,
    rlls,
    simplex_least_squares,
)

CORRECTING = ("acc", "pacc", "mlls_em", "rlls")


@pytest.fixture
def population():
    return make_population(5, 80, np.random.default_rng(7))


@contextmanager
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AuditWarning)
        yield


def _target(population, rng, alpha=0.7):
    prior = rng.dirichlet(np.full(population.confusion.n_classes, alpha))
    return prior, prior @ population.px_y  # the target weight of every x


@pytest.mark.parametrize("method", CORRECTING)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_recovery_on_a_label_shifted_population(method, seed):
    rng = np.random.default_rng(seed)
    population = make_population(4 + seed, 60, rng, source=rng.dirichlet(np.full(4 + seed, 3.0)))
    prior, weights = _target(population, rng)
    result = estimate_prior(population.probs, population.confusion, method=method, weights=weights)
    tol = 1e-6 if method == "mlls_em" else 1e-9
    np.testing.assert_allclose(result.prior, prior, atol=tol)
    assert result.residual < 1e-5


def test_exact_recovery_holds_for_skewed_prior_with_zero_classes(population):
    prior = np.array([0.8, 0.2, 0.0, 0.0, 0.0])
    weights = prior @ population.px_y
    for method in CORRECTING:
        est = estimate_prior(population.probs, population.confusion, method=method, weights=weights).prior
        np.testing.assert_allclose(est, prior, atol=1e-4, err_msg=method)


def test_cc_and_pcc_are_the_uncorrected_averages(population):
    rng = np.random.default_rng(3)
    _, weights = _target(population, rng)
    w = weights / weights.sum()
    np.testing.assert_allclose(
        pcc(population.probs, population.confusion, weights=weights).prior, w @ population.probs
    )
    hard = np.bincount(population.probs.argmax(axis=1), weights=w, minlength=5)
    np.testing.assert_allclose(cc(population.probs, population.confusion, weights=weights).prior, hard)


def test_repo_recipe_is_exact_only_for_one_hot_classifiers(population):
    rng = np.random.default_rng(4)
    prior, weights = _target(population, rng)
    soft = llmsurgeon_repo(population.probs, population.confusion, weights=weights).prior
    # hard C with soft p_bar, as Yaxin9Luo/LLMSurgeon does: biased (as in our toy simulation)
    assert np.abs(soft - prior).max() > 1e-3
    onehot = np.eye(5)[population.probs.argmax(axis=1)]
    confusion = Confusion(
        population.confusion.hard, population.confusion.hard, population.confusion.source_prior,
        population.confusion.label_prior, population.confusion.n_per_class,
    )  # fmt: skip
    np.testing.assert_allclose(llmsurgeon_repo(onehot, confusion, weights=weights).prior, prior, atol=1e-9)


def test_rlls_shrinks_toward_the_reference_label_prior(population):
    prior, weights = _target(population, np.random.default_rng(5), alpha=0.3)
    src = population.confusion.label_prior
    exact = rlls(population.probs, population.confusion, weights=weights, rho=0.0).prior
    np.testing.assert_allclose(exact, prior, atol=1e-9)
    distances = [
        np.abs(rlls(population.probs, population.confusion, weights=weights, rho=rho).prior - src).sum()
        for rho in (0.0, 0.05, 0.2, 1.0)
    ]
    assert all(a >= b - 1e-9 for a, b in zip(distances, distances[1:], strict=False))
    np.testing.assert_allclose(
        rlls(population.probs, population.confusion, weights=weights, rho=100.0).prior, src, atol=1e-9
    )


def test_weights_equal_duplicated_rows():
    rng = np.random.default_rng(8)
    labels, _, probs = simulated_split(4, 300, np.full(4, 0.25), rng)
    confusion = Confusion.from_predictions(probs, labels)
    _, _, gen = simulated_split(4, 50, np.array([0.7, 0.1, 0.1, 0.1]), rng)
    counts = rng.integers(1, 4, size=50)
    for method in ESTIMATORS:
        a = estimate_prior(gen, confusion, method=method, weights=counts).prior
        b = estimate_prior(np.repeat(gen, counts, axis=0), confusion, method=method).prior
        np.testing.assert_allclose(a, b, atol=1e-7, err_msg=method)


def _random_instance(draw_seed: int, k: int, n: int):
    rng = np.random.default_rng(draw_seed)
    labels, _, conf_probs = simulated_split(
        k, 40 * k, np.full(k, 1.0 / k), rng, separation=rng.uniform(0.5, 4)
    )
    confusion = Confusion.from_predictions(conf_probs, labels)
    prior = rng.dirichlet(np.full(k, rng.uniform(0.2, 2.0)))
    _, _, probs = simulated_split(k, n, prior, rng)
    return probs, confusion


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), k=st.integers(2, 7), n=st.integers(5, 200))
def test_every_estimator_returns_a_point_on_the_simplex(seed, k, n):
    probs, confusion = _random_instance(seed, k, n)
    for method in ESTIMATORS:
        with _quiet():
            prior = estimate_prior(probs, confusion, method=method).prior
        assert prior.shape == (k,)
        assert np.all(np.isfinite(prior)) and prior.min() >= 0.0, method
        assert abs(prior.sum() - 1.0) < 1e-9, method


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), k=st.integers(2, 6))
def test_estimators_are_permutation_equivariant(seed, k):
    probs, confusion = _random_instance(seed, k, 150)
    order = np.random.default_rng(seed).permutation(k)
    for method in ESTIMATORS:
        with _quiet():
            base = estimate_prior(probs, confusion, method=method).prior
            permuted = estimate_prior(probs[:, order], confusion.permuted(order), method=method).prior
        np.testing.assert_allclose(permuted, base[order], atol=2e-5, err_msg=method)


def test_singular_confusion_warns_and_still_recovers_the_identified_part(population):
    # Make classes 0 and 1 indistinguishable: same class conditional.
    px_y = population.px_y.copy()
    px_y[1] = px_y[0]
    k = px_y.shape[0]
    src = np.full(k, 1.0 / k)
    joint = src[:, None] * px_y
    probs = (joint / joint.sum(axis=0)).T
    onehot = np.eye(k)[probs.argmax(axis=1)]
    confusion = Confusion(px_y @ onehot, px_y @ probs, joint.sum(axis=0) @ probs, src, np.full(k, 100))
    prior = np.array([0.5, 0.1, 0.2, 0.15, 0.05])
    weights = prior @ px_y
    for method in ("acc", "pacc", "rlls"):
        with pytest.warns(AuditWarning, match="numerically singular"):
            est = estimate_prior(probs, confusion, method=method, weights=weights).prior
        assert est.min() >= 0 and abs(est.sum() - 1) < 1e-9
        assert est[0] + est[1] == pytest.approx(0.6, abs=1e-6), method
        np.testing.assert_allclose(est[2:], prior[2:], atol=1e-6, err_msg=method)
    est = mlls_em(probs, confusion, weights=weights).prior
    assert est[0] + est[1] == pytest.approx(0.6, abs=1e-5)
    # A confusion matrix of all-equal rows: nothing is identified, the output is still a valid prior.
    flat = Confusion(
        np.full((3, 3), 1 / 3), np.full((3, 3), 1 / 3), np.full(3, 1 / 3), np.full(3, 1 / 3), [5, 5, 5]
    )
    with pytest.warns(AuditWarning):
        out = pacc(np.full((4, 3), 1 / 3), flat).prior
    assert out.min() >= 0 and abs(out.sum() - 1) < 1e-12


def _slsqp_simplex_objective(a: np.ndarray, b: np.ndarray) -> float:
    """The simplex least-squares optimum value by SLSQP (an independent, approximate solver)."""
    k = a.shape[1]
    res = minimize(
        lambda v: float(np.sum((a @ v - b) ** 2)),  # noqa: B023 (called before the loop moves on)
        np.full(k, 1 / k),
        jac=lambda v: 2 * a.T @ (a @ v - b),  # noqa: B023
        method="SLSQP",
        bounds=[(0, 1)] * k,
        constraints={"type": "eq", "fun": lambda v: v.sum() - 1},
        options={"ftol": 1e-15, "maxiter": 500},
    )
    return float(res.fun)


def test_simplex_least_squares_meets_kkt_and_matches_slsqp():
    rng = np.random.default_rng(11)
    for trial in range(200):
        k = int(rng.integers(2, 9))
        a = rng.normal(size=(k + int(rng.integers(0, 3)), k))
        if trial % 4 == 0:
            a[:, 0] = a[:, 1]
        b = rng.normal(size=a.shape[0])
        sol = simplex_least_squares(a, b)
        x = sol.x
        assert x.min() >= 0 and abs(x.sum() - 1) < 1e-12
        assert sol.kkt_violation < 1e-8
        assert np.sum((a @ x - b) ** 2) <= _slsqp_simplex_objective(a, b) + 1e-10


def test_project_to_simplex():
    np.testing.assert_allclose(project_to_simplex(np.array([0.2, 0.3, 0.5])), [0.2, 0.3, 0.5])
    np.testing.assert_allclose(project_to_simplex(np.array([2.0, 0.0, -1.0])), [1.0, 0.0, 0.0])
    np.testing.assert_allclose(project_to_simplex(np.array([0.5, 0.5, 0.5])), [1 / 3] * 3)


def test_mlls_em_reports_convergence(population):
    _, weights = _target(population, np.random.default_rng(2))
    result = mlls_em(population.probs, population.confusion, weights=weights)
    assert result.converged and result.n_iter > 0
    with pytest.warns(AuditWarning, match="did not converge"):
        assert not mlls_em(population.probs, population.confusion, weights=weights, max_iter=1).converged


# ---- independent implementations -------------------------------------------------------------------------


def _oracle_instances(count: int):
    rng = np.random.default_rng(21)
    for _ in range(count):
        k = int(rng.integers(2, 7))
        yield _random_instance(int(rng.integers(2**31)), k, int(rng.integers(100, 400)))


def _ls(a: np.ndarray, x: np.ndarray, b: np.ndarray) -> float:
    return float(np.sum((a @ x - b) ** 2))


def test_pacc_and_acc_agree_with_quapy():
    aggregative = pytest.importorskip("quapy.method.aggregative")
    for probs, confusion in _oracle_instances(25):
        ours = pacc(probs, confusion).prior
        theirs = aggregative.ACC.solve_adjustment(
            confusion.soft.T, probs.mean(axis=0), method="inversion", solver="minimize"
        )
        # QuaPy minimises ||M^T p - p_bar|| with SLSQP's default tolerance: ours must be at least as good.
        pbar = probs.mean(axis=0)
        assert _ls(confusion.soft.T, ours, pbar) <= _ls(confusion.soft.T, theirs, pbar) + 1e-12
        np.testing.assert_allclose(ours, theirs, atol=2e-3)
        qhat = np.bincount(probs.argmax(axis=1), minlength=confusion.n_classes) / probs.shape[0]
        theirs = aggregative.ACC.solve_adjustment(
            confusion.hard.T, qhat, method="inversion", solver="minimize"
        )
        with _quiet():
            ours = acc(probs, confusion).prior
        # SLSQP is approximate and hard C is often near-singular: compare objective values, not points.
        clipped = np.clip(theirs, 0, None) / np.clip(theirs, 0, None).sum()
        assert _ls(confusion.hard.T, ours, qhat) <= _ls(confusion.hard.T, clipped, qhat) + 1e-8


def test_mlls_em_agrees_with_quapy_emq():
    aggregative = pytest.importorskip("quapy.method.aggregative")
    for probs, confusion in _oracle_instances(25):
        ours = mlls_em(probs, confusion, tol=1e-12, max_iter=100_000).prior
        theirs, _ = aggregative.EMQ.EM(confusion.source_prior, probs, epsilon=1e-12)
        np.testing.assert_allclose(ours, theirs, atol=2e-4)


def test_rlls_agrees_with_quapy_rlls():
    pytest.importorskip("cvxpy")
    helper = pytest.importorskip("quapy.method._helper")
    rng = np.random.default_rng(5)
    for probs, confusion in _oracle_instances(15):
        k = confusion.n_classes
        n_source = int(confusion.n_per_class.sum())
        for mode in ("soft", "hard"):
            rho = float(rng.choice([0.01, 0.3, 1.0])) * helper._rlls_compute_3deltaC(k, n_source, 0.05)
            # QuaPy builds the joint from per-document predictions; give it documents with our C / M rows.
            rows = confusion.soft if mode == "soft" else confusion.hard
            joint = (confusion.label_prior[:, None] * rows).T
            qz = (
                probs.mean(axis=0)
                if mode == "soft"
                else np.bincount(probs.argmax(1), minlength=k) / len(probs)
            )
            w = helper._rlls_compute_weights(joint, qz, joint.sum(axis=1), rho, clip=True)
            theirs = w * confusion.label_prior
            theirs /= theirs.sum()
            with _quiet():
                ours = rlls(probs, confusion, rho=rho, mode=mode).prior
            np.testing.assert_allclose(ours, theirs, atol=2e-3)


# ---- bad input --------------------------------------------------------------------------------------------


def test_bad_probabilities_fail_with_clear_messages(population):
    conf = population.confusion
    with pytest.raises(ValueError, match=r"probs: row 0 sums to 2.*must sum to 1"):
        pacc(population.probs * 2, conf)
    with pytest.raises(ValueError, match=r"probs: has 3 columns but the reference has 5 classes"):
        pacc(population.probs[:, :3], conf)
    with pytest.raises(ValueError, match=r"probs: row \d+ has a negative entry.*not logits"):
        pacc(population.probs - 0.5, conf)
    with pytest.raises(ValueError, match=r"probs: expected a 2-D array"):
        pacc(population.probs[0], conf)
    with pytest.raises(ValueError, match=r"weights: expected a 1-D array of length 80"):
        pacc(population.probs, conf, weights=np.ones(3))
    with pytest.raises(ValueError, match=r"method: unknown estimator 'bogus'; accepted: \["):
        estimate_prior(population.probs, conf, method="bogus")
    with pytest.raises(ValueError, match=r"mode: got 'medium'; accepted values are 'hard' and 'soft'"):
        rlls(population.probs, conf, mode="medium")
    with pytest.raises(TypeError, match="confusion: expected a hf_fundamentals.audit.Confusion"):
        pacc(population.probs, conf.soft)


def test_confusion_from_predictions_rejects_empty_classes():
    probs = np.full((4, 3), 1 / 3)
    with pytest.raises(ValueError, match=r"labels: classes \[2\] have no held-out documents"):
        Confusion.from_predictions(probs, np.array([0, 1, 1, 0]))
    with pytest.raises(ValueError, match=r"labels: values must lie in \[0, 3\)"):
        Confusion.from_predictions(probs, np.array([0, 1, 2, 3]))


def test_repo_recipe_down_weights_unconfident_generations_like_the_repo():
    """LLMSurgeon's unknown mass: weight 1 - clip((tau - max p) / tau, 0, 1) per generation before averaging."""
    rng = np.random.default_rng(11)
    probs, confusion = _random_instance(11, 4, 300)
    tau = 0.9
    u = np.clip((tau - probs.max(axis=1)) / tau, 0, 1)
    assert 0 < u.mean() < 1  # the instance has both confident and unconfident generations
    reweighted = llmsurgeon_repo(probs, confusion, unknown_threshold=None, weights=1 - u).prior
    np.testing.assert_allclose(llmsurgeon_repo(probs, confusion, unknown_threshold=tau).prior, reweighted)
    plain = llmsurgeon_repo(probs, confusion, unknown_threshold=None).prior
    assert np.abs(plain - reweighted).max() > 1e-6
    token_weights = rng.integers(1, 50, size=300).astype(float)  # weights compose with token counts
    np.testing.assert_allclose(
        llmsurgeon_repo(probs, confusion, weights=token_weights).prior,
        llmsurgeon_repo(probs, confusion, unknown_threshold=None, weights=token_weights * (1 - u)).prior,
    )
    with pytest.raises(ValueError, match="unknown_threshold"):
        llmsurgeon_repo(probs, confusion, unknown_threshold=1.5)
