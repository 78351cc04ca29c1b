"""Offline pairwise losses (DPO family, KTO) and the registry: hand-computed values, identities,
gradients, hyperparameter checks."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from alignax import losses
from alignax.losses import PreferenceLogps

# One pair used for the hand-computed values: u_c = -1 - (-1.5) = 0.5, u_r = -2 - (-1.5) = -0.5,
# h = u_c - u_r = 1, beta = 0.5 so beta h = 0.5, beta u_c = 0.25, beta u_r = -0.25.
PC, PR, RC, RR, BETA = -1.0, -2.0, -1.5, -1.5, 0.5
LEN_C, LEN_R = 2.0, 4.0
# LD-DPO's public-prefix sums and WPO's normalised log-probs for the same pair.
PUBLIC = dict(
    policy_chosen_public=-0.6,
    policy_rejected_public=-1.0,
    ref_chosen_public=-1.0,
    ref_rejected_public=-0.5,
)
WPO = dict(chosen_wpo_logps=-0.2, rejected_wpo_logps=-0.3)


def ls(x):  # log sigmoid
    return -math.log1p(math.exp(-x))


def sig(x):
    return 1.0 / (1.0 + math.exp(-x))


HAND = {
    # -log s(beta h)
    "dpo": ({}, -ls(0.5)),
    # cDPO eps = 0.1: -(0.9) log s(0.5) - 0.1 log s(-0.5)
    "dpo_ls": ({"label_smoothing": 0.1}, -0.9 * ls(0.5) - 0.1 * ls(-0.5)),
    # robust: (-(0.9) log s(0.5) + 0.1 log s(-0.5)) / 0.8
    "robust_dpo": ({"label_smoothing": 0.1}, (-0.9 * ls(0.5) + 0.1 * ls(-0.5)) / 0.8),
    # hinge: max(0, 1 - 0.5)
    "hinge": ({}, 0.5),
    # ipo: (1 - 1/(2*0.5))^2 = 0; use beta 0.25 below instead via kwargs override
    "ipo": ({"beta": 0.25}, (1.0 - 2.0) ** 2),
    # exo eps = 0.1: s(.5)(log s(.5) - log .9) + s(-.5)(log s(-.5) - log .1)
    "exo": (
        {"label_smoothing": 0.1},
        sig(0.5) * (ls(0.5) - math.log(0.9)) + sig(-0.5) * (ls(-0.5) - math.log(0.1)),
    ),
    # nca: -log s(.25) - .5 log s(-.25) - .5 log s(.25)   (beta u_r = -0.25, so -beta u_r = .25)
    "nca": ({}, -ls(0.25) - 0.5 * ls(-0.25) - 0.5 * ls(0.25)),
    # bco with delta = 0.1: -log s(0.25 - 0.1) - log s(0.1 + 0.25)
    "bco_pair": ({"reward_shift": 0.1}, -ls(0.15) - ls(0.35)),
    # sppo_hard: (0.5 - 1)^2 + (-0.5 + 1)^2
    "sppo_hard": ({}, 0.25 + 0.25),
    # AOT's losses are functions of the whole batch: see AOT_BATCH below (3 distinct pairs).
    # aot: policy margins pc - pr = [-1, 3, 1] sort to [-1, 1, 3], reference margins
    # rc - rr = [.5, -2, -.5] sort to [-2, -.5, .5]; d = [1, 1.5, 2.5], beta d = [.5, .75, 1.25]
    "aot": ({}, [-ls(0.5), -ls(0.75), -ls(1.25)]),
    # aot_unpaired: u_c = pc - rc = [-.5, 4, 1] sorts to [-.5, 1, 4], u_r = pr - rr =
    # [1, -1, -.5] sorts to [-1, -.5, 1]; d = [.5, 1.5, 3], beta d = [.25, .75, 1.5]
    "aot_unpaired": ({}, [-ls(0.25), -ls(0.75), -ls(1.5)]),
    # apo_zero: 1 - s(.25) + s(-.25)
    "apo_zero": ({}, 1 - sig(0.25) + sig(-0.25)),
    # apo_down: s(.25) + 1 - s(.5)
    "apo_down": ({}, sig(0.25) + 1 - sig(0.5)),
    # discopop tau = 0.05: w = s(10), (1 - w)(-log s(.5)) + w exp(-.5)
    "discopop": ({}, (1 - sig(10.0)) * -ls(0.5) + sig(10.0) * math.exp(-0.5)),
    # length-normalised: ubar_c = .5/2 = .25, ubar_r = -.5/4 = -.125; -log s(.5 * .375)
    "dpo_length_normalized": ({}, -ls(0.5 * 0.375)),
    # rpo alpha = 2: dpo + 2 * (1 / 2)   (per-token NLL of chosen = -pc / len_c = 0.5)
    "rpo": ({"alpha": 2.0}, -ls(0.5) + 1.0),
    # reference-free: -log s(0.5 * (pc - pr)) = -log s(0.5)
    "dpo_reference_free": ({}, -ls(0.5)),
    # simpo gamma = 0.1: pibar_c = -0.5, pibar_r = -0.5; -log s(0.5 * 0 - 0.1)
    "simpo": ({"gamma": 0.1}, -ls(-0.1)),
    # cpo: -log s(0.5 * 1) + 0.5
    "cpo": ({}, -ls(0.5) + 0.5),
    # orpo: pibar = -0.5 both -> log OR = 0; NLL 0.5 - 0.5 log s(0) = 0.5 + 0.5 log 2
    "orpo": ({}, 0.5 + 0.5 * math.log(2.0)),
    # IPO on per-token means: ubar_c = 0.5 / 2, ubar_r = -0.5 / 4; (0.375 - 1 / (2 * 0.5))^2
    "ipo_length_normalized": ({}, (0.375 - 1.0) ** 2),
    # f-DPO with the reverse KL is DPO
    "f_dpo": ({}, -ls(0.5)),
    # LD-DPO a = 0.5: pihat = (total + public) / 2: pc -0.8, pr -1.5, rc -1.25, rr -1.0;
    # u_c = 0.45, u_r = -0.5, -log s(0.5 * 0.95)
    "ld_dpo": ({}, -ls(0.475)),
    # WPO: weight exp(-0.2 - 0.3) times DPO
    "wpo": ({}, math.exp(-0.5) * -ls(0.5)),
    # AlphaPO (a = 0.25, gamma = 0.5): pibar_c = pibar_r = -0.5, equal rewards; -log s(-0.5)
    "alphapo": ({}, -ls(-0.5)),
    # SFT: per-token NLL of chosen, 1 / 2
    "sft": ({}, 0.5),
    # MPO (delta = 0.1): 0.8 dpo + 0.2 bco_pair + 1.0 * 0.5
    "mpo": ({"reward_shift": 0.1}, 0.8 * -ls(0.5) + 0.2 * (-ls(0.15) - ls(0.35)) + 0.5),
}


def _hp(name, **hp):
    """Hyperparameters for `name` (the SFT term takes no beta)."""
    if name == "sft":
        hp.pop("beta", None)
    return hp


# AOT sorts over the batch, so one pair would leave the sort untested: three pairs whose policy
# and reference margins (and u_c, u_r) are all distinct and in different orders, so that sorting
# neither, only one side, or descending all give other values (see the HAND entries).
AOT_BATCH = dict(
    policy_chosen=[0.0, 3.0, 1.0],
    policy_rejected=[1.0, 0.0, 0.0],
    ref_chosen=[0.5, -1.0, 0.0],
    ref_rejected=[0.0, 1.0, 0.5],
)


def _logps(batch=1, **overrides):
    """PreferenceLogps of the hand-computed pair repeated `batch` times; an override may be a
    scalar or a length-`batch` list."""
    values = dict(
        policy_chosen=PC,
        policy_rejected=PR,
        ref_chosen=RC,
        ref_rejected=RR,
        chosen_lengths=LEN_C,
        rejected_lengths=LEN_R,
        **PUBLIC,
        **WPO,
    )
    values.update(overrides)
    return PreferenceLogps(
        **{k: jnp.broadcast_to(jnp.asarray(v, jnp.float32), (batch,)) for k, v in values.items()}
    )


@pytest.mark.parametrize("case", sorted(HAND))
def test_hand_computed_values(case):
    """Each registered loss matches its formula evaluated by hand with `math` (AOT's on a batch
    of three distinct pairs, entry i its i-th smallest quantile)."""
    kwargs, expected = HAND[case]
    name = "dpo" if case == "dpo_ls" else case
    hp = _hp(name, **{"beta": BETA, **kwargs})
    expected = np.atleast_1d(expected)
    logps = _logps(**AOT_BATCH, batch=3) if name.startswith("aot") else _logps()
    loss, _ = losses.get_preference_loss(name)(logps, **hp)
    assert loss.shape == expected.shape and loss.dtype == jnp.float32
    np.testing.assert_allclose(loss, expected, rtol=1e-5, atol=1e-6)


def test_every_registered_loss_has_a_hand_computed_case():
    """The hand-value table covers the whole registry (a new loss needs a new case)."""
    assert set(losses.PREFERENCE_LOSSES) <= set(HAND)


def test_dpo_equal_logps_is_log2():
    """DPO at equal policy and reference log-ratios is log 2 for every beta."""
    for beta in (0.01, 0.1, 1.0, 10.0):
        loss, _ = losses.dpo_loss(
            jnp.array([-3.0]), jnp.array([-3.0]), jnp.array([-7.0]), jnp.array([-7.0]), beta=beta
        )
        np.testing.assert_allclose(loss, [math.log(2)], rtol=1e-6)


def test_cdpo_with_zero_smoothing_is_dpo_and_robust_with_zero_is_dpo():
    """label_smoothing = 0 reduces cDPO and robust DPO to DPO."""
    rng = np.random.default_rng(0)
    args = [jnp.asarray(rng.normal(size=5), jnp.float32) for _ in range(4)]
    base, _ = losses.dpo_loss(*args, beta=0.3)
    cdpo, _ = losses.dpo_loss(*args, beta=0.3, label_smoothing=0.0)
    robust, _ = losses.robust_dpo_loss(*args, beta=0.3, label_smoothing=0.0)
    np.testing.assert_allclose(cdpo, base)
    np.testing.assert_allclose(robust, base, rtol=1e-6)


def test_reference_free_is_dpo_with_zero_refs():
    """Reference-free DPO equals DPO with reference log-probs set to 0."""
    pc, pr = jnp.array([-1.0, -4.0]), jnp.array([-2.5, -0.5])
    free, _ = losses.reference_free_dpo_loss(pc, pr, beta=0.7)
    dpo_zero, _ = losses.dpo_loss(pc, pr, jnp.zeros(2), jnp.zeros(2), beta=0.7)
    np.testing.assert_allclose(free, dpo_zero)


def test_ipo_minimum_at_half_inverse_beta():
    """The IPO loss, as a function of h, is minimised (value 0) at h = 1 / (2 beta)."""
    beta = 0.2
    hs = jnp.linspace(-5, 10, 301)
    loss, _ = losses.ipo_loss(
        hs, jnp.zeros_like(hs), jnp.zeros_like(hs), jnp.zeros_like(hs), beta=beta
    )
    assert float(hs[jnp.argmin(loss)]) == pytest.approx(1 / (2 * beta), abs=0.05)
    grad = jax.grad(lambda h: losses.ipo_loss(h, 0.0, 0.0, 0.0, beta=beta)[0].sum())(2.5)
    assert float(grad) == pytest.approx(0.0, abs=1e-6)


def test_rpo_is_dpo_plus_nll_and_cpo_is_reference_free_plus_nll():
    """RPO - DPO and CPO - reference-free DPO both equal alpha times the chosen per-token NLL."""
    pc, pr, rc, rr = (jnp.array([v]) for v in (-6.0, -4.0, -5.0, -5.0))
    n = jnp.array([3.0])
    rpo, m = losses.rpo_loss(pc, pr, rc, rr, chosen_lengths=n, beta=0.1, alpha=0.5)
    base, _ = losses.dpo_loss(pc, pr, rc, rr, beta=0.1)
    np.testing.assert_allclose(rpo - base, 0.5 * 6.0 / 3.0, rtol=1e-6)
    cpo, _ = losses.cpo_loss(pc, pr, chosen_lengths=n, beta=0.1, alpha=0.5)
    free, _ = losses.reference_free_dpo_loss(pc, pr, beta=0.1)
    np.testing.assert_allclose(cpo - free, 0.5 * 2.0, rtol=1e-6)


def test_length_normalized_dpo_with_unit_lengths_is_dpo():
    """With token counts of 1 the length-normalised DPO is plain DPO."""
    args = [
        jnp.array([-1.0, -3.0]),
        jnp.array([-2.0, -1.0]),
        jnp.array([-1.5, -2.0]),
        jnp.array([-1.0, -1.0]),
    ]
    ones = jnp.ones(2)
    a, _ = losses.length_normalized_dpo_loss(
        *args, chosen_lengths=ones, rejected_lengths=ones, beta=0.4
    )
    b, _ = losses.dpo_loss(*args, beta=0.4)
    np.testing.assert_allclose(a, b)


@pytest.mark.parametrize("name", ["aot", "aot_unpaired"])
def test_aot_is_invariant_to_the_order_of_the_pairs(name):
    """AOT's entries are quantiles of the batch: permuting the pairs (the same permutation on all
    four log-probs) leaves the loss vector unchanged, entry by entry."""
    fn = losses.get_preference_loss(name)
    loss, _ = fn(_logps(**AOT_BATCH, batch=3), beta=BETA)
    for perm in ([2, 0, 1], [1, 2, 0], [0, 2, 1]):
        permuted = {k: [v[i] for i in perm] for k, v in AOT_BATCH.items()}
        np.testing.assert_allclose(fn(_logps(**permuted, batch=3), beta=BETA)[0], loss, rtol=1e-6)


def test_metrics_are_implicit_rewards():
    """rewards/chosen = beta u_c, rewards/rejected = beta u_r, margin their difference and
    accuracy 1 exactly when the margin is > 0, by hand on four pairs (beta = 0.5):
      0: u_c .5,  u_r -.5   margin .5   -> 1
      1: u_c -1,  u_r -.5   margin -.25 -> 0  (policy margin pc - pr = .5 > 0, rejected reward < 0)
      2: u_c -.5, u_r -2    margin .75  -> 1  (chosen reward < 0)
      3: u_c 0,   u_r 0     margin 0    -> 0  (a tie is not a win)."""
    _, m = losses.dpo_loss(
        jnp.array([PC, -2.0, -3.0, -2.0]),
        jnp.array([PR, -2.5, -5.0, -3.0]),
        jnp.array([RC, -1.0, -2.5, -2.0]),
        jnp.array([RR, -2.0, -3.0, -3.0]),
        beta=BETA,
    )
    np.testing.assert_allclose(m["rewards/chosen"], [0.25, -0.5, -0.25, 0.0], atol=1e-7)
    np.testing.assert_allclose(m["rewards/rejected"], [-0.25, -0.25, -1.0, 0.0], atol=1e-7)
    np.testing.assert_allclose(m["rewards/margin"], [0.5, -0.25, 0.75, 0.0], atol=1e-7)
    np.testing.assert_array_equal(m["rewards/accuracy"], [1.0, 0.0, 1.0, 0.0])


@pytest.mark.parametrize("name", losses.PREFERENCE_LOSSES)
def test_gradients_match_finite_differences(name):
    """Reverse-mode gradients of every loss match finite differences (float64)."""
    fn = losses.get_preference_loss(name)
    hp = _hp(name, beta=0.7)
    rng = np.random.default_rng(1)
    with jax.enable_x64(True):
        base = [jnp.asarray(rng.normal(size=3) - 2.0) for _ in range(4)]
        lengths = (jnp.array([1.0, 2.0, 3.0]), jnp.array([2.0, 1.0, 4.0]))
        extra = {k: jnp.full(3, v) for k, v in {**PUBLIC, **WPO}.items()}

        def f(pc, pr, rc, rr):
            return fn(PreferenceLogps(pc, pr, rc, rr, *lengths, **extra), **hp)[0].sum()

        check_grads(f, base, order=1, modes=("rev",), eps=1e-4, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", losses.PREFERENCE_LOSSES)
def test_jit_and_finite_gradients_at_extremes(name):
    """Every loss jits and has finite gradients at very large / small log-ratios."""
    fn = losses.get_preference_loss(name)
    logps = _logps(batch=2)._replace(
        policy_chosen=jnp.array([-400.0, -1e-9]), policy_rejected=jnp.array([-1e-9, -400.0])
    )
    grads = jax.jit(jax.grad(lambda lp: fn(lp, **_hp(name, beta=1.0))[0].sum()))(logps)
    for g in jax.tree.leaves(grads):
        assert np.all(np.isfinite(g))


def test_unknown_loss_name_lists_known_ones():
    """get_preference_loss rejects unknown names with the list of known ones."""
    with pytest.raises(ValueError, match="known losses: dpo, robust_dpo"):
        losses.get_preference_loss("dpoo")


@pytest.mark.parametrize(
    "name, hp, match",
    [
        ("dpo", {"beta": 0.0}, "beta must be > 0"),
        ("dpo", {"beta": -1.0}, "beta must be > 0"),
        ("dpo", {"beta": 0.1, "label_smoothing": 0.5}, r"label_smoothing must be in \[0, 0.5\)"),
        ("dpo", {"beta": 0.1, "label_smoothing": -0.1}, "label_smoothing"),
        ("exo", {"beta": 0.1, "label_smoothing": 0.0}, r"label_smoothing must be in \(0, 0.5\)"),
        ("rpo", {"beta": 0.1, "alpha": -1.0}, "alpha must be >= 0"),
        ("discopop", {"beta": 0.1, "tau": 0.0}, "tau must be > 0"),
        ("dpo", {"label_smoothing": 0.1}, "missing required hyperparameter 'beta'"),
        ("ipo", {"beta": 0.1, "label_smoothing": 0.1}, "unknown hyperparameters"),
        ("nope", {"beta": 0.1}, "unknown preference loss"),
    ],
)
def test_validate_hyperparameters_rejects_bad_values(name, hp, match):
    """Bad hyperparameters raise ValueError naming the parameter and the allowed range."""
    with pytest.raises(ValueError, match=match):
        losses.validate_hyperparameters(name, **hp)


def test_losses_check_hyperparameters_when_called_and_allow_traced_beta():
    """The losses themselves reject a bad beta, but a vmapped (traced) beta is accepted."""
    z = jnp.zeros(2)
    with pytest.raises(ValueError, match="dpo_loss: beta must be > 0"):
        losses.dpo_loss(z, z, z, z, beta=0.0)
    out = jax.vmap(lambda b: losses.dpo_loss(z, z, z, z, beta=b)[0])(jnp.array([0.1, 1.0]))
    np.testing.assert_allclose(out, math.log(2), rtol=1e-6)
    losses.validate_hyperparameters("simpo", beta=2.0, gamma=0.5)  # valid: no error


def test_kto_hand_computed_and_reference_point():
    """KTO: z0 = max(mean(policy_kl - ref_kl), 0), detached; losses follow eq. 8 by hand."""
    policy = jnp.array([-1.0, -3.0])
    ref = jnp.array([-2.0, -2.0])  # u = [1, -1]
    labels = jnp.array([1, 0])
    kl_policy, kl_ref = jnp.array([-1.0, -2.0]), jnp.array([-1.5, -2.5])  # mean diff 0.5
    loss, m = losses.kto_loss(
        policy,
        ref,
        labels,
        kl_policy,
        kl_ref,
        beta=0.5,
        desirable_weight=1.0,
        undesirable_weight=2.0,
    )
    # desirable: 1 - s(0.5 (1 - 0.5)); undesirable: 2 (1 - s(0.5 (0.5 + 1)))
    np.testing.assert_allclose(loss, [1 - sig(0.25), 2 * (1 - sig(0.75))], rtol=1e-6)
    np.testing.assert_allclose(m["kl"], 0.5)
    # A negative KL estimate is clamped to 0.
    _, m = losses.kto_loss(policy, ref, labels, kl_ref, kl_policy, beta=0.5)
    assert float(m["kl"]) == 0.0
    # z0 is detached: no gradient reaches the mismatched-pair log-probs.
    g = jax.grad(lambda kp: losses.kto_loss(policy, ref, labels, kp, kl_ref, beta=0.5)[0].sum())(
        kl_policy
    )
    np.testing.assert_array_equal(g, 0.0)


def test_kto_gradients():
    """KTO gradients w.r.t. the policy log-probs match finite differences."""
    with jax.enable_x64(True):
        f = lambda p: losses.kto_loss(
            p, jnp.zeros(3), jnp.array([1, 0, 1]), jnp.zeros(3) + 0.2, jnp.zeros(3), beta=0.3
        )[0].sum()
        check_grads(f, (jnp.array([0.5, -1.0, 2.0]),), order=1, modes=("rev",), eps=1e-4)


def test_preference_logps_fields_used_by_reference_free_losses():
    """Reference-free losses ignore ref log-probs (garbage refs give the same loss)."""
    clean = _logps(batch=2)
    garbage = clean._replace(ref_chosen=jnp.full(2, 1e6), ref_rejected=jnp.full(2, -1e6))
    for name in losses.REFERENCE_FREE_LOSSES:
        fn = losses.get_preference_loss(name)
        hp = _hp(name, beta=0.5)
        np.testing.assert_array_equal(fn(clean, **hp)[0], fn(garbage, **hp)[0])


# ----------------------------------------------------------------------------------------------
# Conventions (TRL vs paper) and the newer losses: hand-computed cases
# ----------------------------------------------------------------------------------------------

# Two pairs with different chosen lengths, so the NLL conventions differ:
# per response: -pc / n = [2, 3] (mean 2.5); per batch token: 11 / 4 = 2.75.
NLL_PC, NLL_N = jnp.array([-2.0, -9.0]), jnp.array([1.0, 3.0])


def test_chosen_nll_sequence_and_token_conventions_by_hand():
    """'sequence' averages per response then over the batch; 'token' (TRL) is one mean over all
    chosen tokens of the batch: sum(-pc) / sum(n) = 11 / 4."""
    seq = losses.chosen_nll(NLL_PC, NLL_N, "sequence")
    tok = losses.chosen_nll(NLL_PC, NLL_N, "token")
    np.testing.assert_allclose(seq, [2.0, 3.0])
    np.testing.assert_allclose(tok, [2 * 2.0 / 4, 2 * 9.0 / 4])
    assert float(jnp.mean(tok)) == pytest.approx(11 / 4)
    with pytest.raises(ValueError, match="nll_reduction must be one of"):
        losses.chosen_nll(NLL_PC, NLL_N, "batch")


@pytest.mark.parametrize("name", ["rpo", "cpo", "orpo"])
def test_nll_reduction_changes_only_the_nll_term(name):
    """For RPO, CPO and ORPO, token minus sequence NLL reduction shifts the batch-mean loss by
    alpha * (2.75 - 2.5) (alpha = 1; ORPO's NLL has weight 1)."""
    logps = PreferenceLogps(
        NLL_PC, jnp.array([-3.0, -1.0]), jnp.zeros(2), jnp.zeros(2), NLL_N, jnp.array([2.0, 1.0])
    )
    fn = losses.get_preference_loss(name)
    seq, m_seq = fn(logps, beta=0.5, nll_reduction="sequence")
    tok, m_tok = fn(logps, beta=0.5, nll_reduction="token")
    assert float(jnp.mean(tok) - jnp.mean(seq)) == pytest.approx(0.25, abs=1e-6)
    assert float(jnp.mean(m_tok["nll"])) == pytest.approx(2.75)


def test_ipo_summed_and_length_normalised_forms():
    """ipo (paper) regresses the summed margin, ipo_length_normalized (TRL) the per-token one:
    margins 6 summed over lengths 3 and 2 -> (6 - 2)^2 vs (2 - 0 - 2)^2 with beta = 0.25."""
    pc, zero = jnp.array([6.0]), jnp.zeros(1)
    summed, _ = losses.ipo_loss(pc, zero, zero, zero, beta=0.25)
    averaged, _ = losses.length_normalized_ipo_loss(
        pc,
        zero,
        zero,
        zero,
        chosen_lengths=jnp.array([3]),
        rejected_lengths=jnp.array([2]),
        beta=0.25,
    )
    np.testing.assert_allclose(summed, [16.0])
    np.testing.assert_allclose(averaged, [0.0])


def test_f_dpo_divergences_by_hand():
    """f-DPO with u_c = 0.5, u_r = -0.5, beta = 0.5: the implicit reward is beta f'(e^u):
    forward KL  -e^-u: margin e^.5 - e^-.5;  JS  log s(u): margin log s(.5) - log s(-.5) = .5;
    alpha (a = .5)  -e^(-a u) / a: margin (e^.25 - e^-.25) / .5."""
    args = (jnp.array([PC]), jnp.array([PR]), jnp.array([RC]), jnp.array([RR]))
    expected = {
        "reverse_kl": -ls(0.5 * 1.0),
        "forward_kl": -ls(0.5 * (math.exp(0.5) - math.exp(-0.5))),
        "js": -ls(0.5 * 0.5),
        "alpha": -ls(0.5 * (math.exp(0.25) - math.exp(-0.25)) / 0.5),
    }
    for divergence, value in expected.items():
        loss, _ = losses.f_dpo_loss(*args, beta=BETA, divergence=divergence, divergence_alpha=0.5)
        np.testing.assert_allclose(loss, [value], rtol=1e-6, err_msg=divergence)
    # alpha = 1 is the forward KL.
    a1, _ = losses.f_dpo_loss(*args, beta=BETA, divergence="alpha", divergence_alpha=1.0)
    fwd, _ = losses.f_dpo_loss(*args, beta=BETA, divergence="forward_kl")
    np.testing.assert_allclose(a1, fwd, rtol=1e-6)


def test_cpo_forms_by_hand():
    """CPO forms on PC = -1 (2 tokens), PR = -2 (4 tokens), beta = 0.5, alpha = 1, NLL = 0.5:
    sigmoid -log s(0.5); hinge max(0, 1 - 0.5); ipo (pibar -0.5 both) (0 - 1)^2;
    simpo (gamma 0.1) -log s(0 - 0.1)."""
    logps = _logps()
    fn = losses.get_preference_loss("cpo")
    expected = {"sigmoid": -ls(0.5), "hinge": 0.5, "ipo": 1.0, "simpo": -ls(-0.1)}
    for form, value in expected.items():
        loss, m = fn(logps, beta=BETA, form=form, gamma=0.1)
        np.testing.assert_allclose(loss, [value + 0.5], rtol=1e-6, err_msg=form)
        np.testing.assert_allclose(m["nll"], [0.5])
    with pytest.raises(ValueError, match="form must be one of"):
        fn(logps, beta=BETA, form="exo")


def test_alphapo_by_hand_and_simpo_limit():
    """AlphaPO with pibar_c = -1, pibar_r = -2, a = 1, beta = 1, gamma = 0:
    r = 1 - e^(-a pibar): r_c = 1 - e, r_r = 1 - e^2, loss = -log s(e^2 - e). a = 0 is SimPO."""
    pc, pr, n = jnp.array([-2.0]), jnp.array([-4.0]), jnp.array([2.0])
    kw = dict(chosen_lengths=n, rejected_lengths=n, beta=1.0, gamma=0.0)
    loss, m = losses.alphapo_loss(pc, pr, reward_alpha=1.0, **kw)
    np.testing.assert_allclose(loss, [-ls(math.e**2 - math.e)], rtol=1e-5)
    np.testing.assert_allclose(m["rewards/chosen"], [1 - math.e], rtol=1e-6)
    zero, _ = losses.alphapo_loss(pc, pr, reward_alpha=0.0, **kw)
    tiny, _ = losses.alphapo_loss(pc, pr, reward_alpha=1e-4, **kw)
    simpo, _ = losses.simpo_loss(pc, pr, **kw)
    np.testing.assert_allclose(zero, simpo)
    np.testing.assert_allclose(tiny, simpo, rtol=1e-3)


def test_ld_dpo_alpha_one_is_dpo_and_alpha_zero_uses_public_parts():
    """ld_alpha = 1 ignores the public split (DPO); ld_alpha = 0 is DPO on the public sums."""
    lp = _logps()
    fn = losses.get_preference_loss("ld_dpo")
    one, _ = fn(lp, beta=BETA, ld_alpha=1.0)
    np.testing.assert_allclose(one, [-ls(0.5)], rtol=1e-6)
    zero, _ = fn(lp, beta=BETA, ld_alpha=0.0)
    # public: u_c = -0.6 + 1.0 = 0.4, u_r = -1.0 + 0.5 = -0.5
    np.testing.assert_allclose(zero, [-ls(0.5 * 0.9)], rtol=1e-6)


def test_wpo_weight_is_a_capped_constant():
    """WPO weights exp(a_c + a_r) are capped at 1 and carry no gradient."""
    np.testing.assert_allclose(losses.wpo_weights(jnp.array([0.3]), jnp.array([0.2])), [1.0])
    g = jax.grad(lambda a: losses.wpo_weights(a, jnp.array([-1.0])).sum())(jnp.array([-1.0]))
    np.testing.assert_array_equal(g, [0.0])


# Two pairs for WPO's weightings: a_c + a_r = 0.3 + 0.2 = 0.5 (a pair likelier than the policy's
# typical sample: the variants differ) and -0.2 - 0.3 = -0.5 (below the cap: they agree).
WPO_PAIRS = dict(chosen_wpo_logps=[0.3, -0.2], rejected_wpo_logps=[0.2, -0.3])


@pytest.mark.parametrize(
    "weighting, weights",
    [("clamped", [1.0, math.exp(-0.5)]), ("unclamped", [math.exp(0.5), math.exp(-0.5)])],
)
def test_wpo_weightings_by_hand(weighting, weights):
    """WPO = w * DPO with DPO = -log s(beta h) = -log s(0.5) for both pairs and
    "clamped" (TRL <= 0.28): w = min(e^(a_c + a_r), 1) = [1, e^-0.5];
    "unclamped" (TRL >= 0.29): w = e^a_c e^a_r = [e^0.5, e^-0.5]. The weights carry no gradient:
    d loss / d policy_chosen is w times DPO's."""
    fn = losses.get_preference_loss("wpo")
    logps = _logps(batch=2, **WPO_PAIRS)
    loss, metrics = fn(logps, beta=BETA, weighting=weighting)
    np.testing.assert_allclose(metrics["wpo/weight"], weights, rtol=1e-6)
    np.testing.assert_allclose(loss, [w * -ls(0.5) for w in weights], rtol=1e-6)
    grad = jax.grad(lambda lp: fn(lp, beta=BETA, weighting=weighting)[0].sum())(logps)
    # d(-log s(beta h)) / d policy_chosen = -beta s(-beta h) = -0.5 s(-0.5)
    np.testing.assert_allclose(
        grad.policy_chosen, [w * -0.5 * sig(-0.5) for w in weights], rtol=1e-6
    )
    np.testing.assert_array_equal(grad.chosen_wpo_logps, [0.0, 0.0])


def test_wpo_default_weighting_is_clamped():
    """Leaving `weighting` out gives the clamped weights, so earlier WPO runs are unchanged."""
    logps = _logps(batch=2, **WPO_PAIRS)
    default, _ = losses.get_preference_loss("wpo")(logps, beta=BETA)
    clamped, _ = losses.get_preference_loss("wpo")(logps, beta=BETA, weighting="clamped")
    np.testing.assert_array_equal(default, clamped)
    assert losses.validate_hyperparameters("wpo", beta=0.1, weighting="unclamped") is None


def _wpo_config(*overrides):
    """configs/dpo.py:wpo with `--config.<key>=<value>` overrides, parsed as the experiment
    command line parses them (ml_collections' config flag)."""
    from pathlib import Path

    from absl import flags
    from ml_collections import config_flags

    path = Path(__file__).parents[1] / "configs" / "dpo.py"
    argv = ["test", f"--config={path}:wpo", *overrides]
    flag_values = flags.FlagValues()
    config_flags.DEFINE_config_file(
        "config", flag_values=flag_values, lock_config=True, sys_argv=argv
    )
    flag_values(argv)
    return flag_values.config


def test_wpo_weighting_is_a_config_key():
    """configs/dpo.py:wpo declares loss.hyperparameters.weighting = "clamped";
    `--config.loss.hyperparameters.weighting=unclamped` reaches the loss (the unclamped hand
    value, with the config's beta = 0.1: -log s(0.1 h) = -log s(0.1)); an unknown value is
    refused when the loss function is built, naming the allowed values."""
    from alignax import objectives
    from tests.helpers import tiny_model

    assert _wpo_config().loss.hyperparameters.weighting == "clamped"
    config = _wpo_config("--config.loss.hyperparameters.weighting=unclamped")
    hyperparameters = dict(config.loss.hyperparameters)
    assert hyperparameters == {"beta": 0.1, "label_smoothing": 0.0, "weighting": "unclamped"}
    loss, _ = losses.get_preference_loss("wpo")(_logps(batch=2, **WPO_PAIRS), **hyperparameters)
    np.testing.assert_allclose(
        loss, [math.exp(0.5) * -ls(0.1), math.exp(-0.5) * -ls(0.1)], rtol=1e-6
    )
    config = _wpo_config("--config.loss.hyperparameters.weighting=capped")
    with pytest.raises(
        ValueError, match=r"weighting must be one of \('clamped', 'unclamped'\), got 'capped'"
    ):
        objectives.preference_loss_fn(tiny_model(), config.loss)
    with pytest.raises(ValueError, match="wpo_weights: weighting must be one of"):
        losses.wpo_weights(jnp.zeros(1), jnp.zeros(1), weighting="capped")


def test_mpo_is_the_weighted_sum_of_its_components():
    """mpo_loss = 0.8 DPO + 0.2 BCO(delta) + 1.0 SFT, and equals the generic weighted sum of the
    registered dpo, bco_pair and sft losses."""
    from alignax.losses import registry

    lp = _logps(batch=1)._replace(policy_chosen=jnp.array([-3.0]))
    mpo, _ = losses.get_preference_loss("mpo")(lp, beta=BETA, reward_shift=0.2)
    combined, spec = registry.weighted_preference_loss(
        [("dpo", 0.8, {"beta": BETA}), ("bco_pair", 0.2, {"beta": BETA}), ("sft", 1.0, {})]
    )
    mixed, metrics = combined(lp, reward_shift=0.2)
    # u_c = -3 + 1.5 = -1.5, u_r = -0.5: dpo -log s(0.5 (-1)), bco -log s(-0.75 - 0.2)
    # - log s(0.2 + 0.25), sft 3 / 2
    by_hand = 0.8 * -ls(-0.5) + 0.2 * (-ls(-0.95) - ls(0.45)) + 1.5
    np.testing.assert_allclose(mpo, [by_hand], rtol=1e-6)
    np.testing.assert_allclose(mixed, [by_hand], rtol=1e-6)
    np.testing.assert_allclose(metrics["loss/sft"], [1.5])
    assert spec.reference and spec.lengths == "chosen" and spec.aux == "reward_shift"
