"""Closed-form optima on a categorical "bandit" policy: the library losses, minimised exactly in
expectation, reach the policies their papers say they target.

Set-up: K = 4 responses, known reward r and reference pi_ref; the policy is softmax(theta).
u_i = log pi(i) - log pi_ref(i). Preference data: an ordered pair (i, j) is drawn with probability
w_ij = pi_ref(i) pi_ref(j) / (1 - sum_k pi_ref(k)^2) (i != j), and i is preferred with the
Bradley-Terry probability p_ij = s(r_i - r_j). The expected loss is then a weighted batch of all
K (K - 1) ordered (chosen = i, rejected = j) pairs with weight
c_ij = (w_ij + w_ji) p_ij = 2 w_ij p_ij.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from alignax import losses
from alignax.rl.advantages import gae, kl_penalized_rewards

REWARD = np.array([1.0, 0.5, -0.5, 0.0])
PI_REF = np.array([0.4, 0.3, 0.2, 0.1])
K = len(REWARD)
PAIRS = np.array([(i, j) for i, j in itertools.permutations(range(K), 2)])  # [P, 2]


def _pair_weights():
    w = PI_REF[PAIRS[:, 0]] * PI_REF[PAIRS[:, 1]]
    w = w / w.sum()
    p = 1.0 / (1.0 + np.exp(-(REWARD[PAIRS[:, 0]] - REWARD[PAIRS[:, 1]])))
    return 2.0 * w * p  # c_ij


def _minimise(objective, steps=3000, learning_rate=0.05):
    """Full-batch Adam on the logits theta, as one jitted lax.scan."""
    optimizer = optax.adam(learning_rate)
    theta = jnp.zeros(K)

    def step(carry, _):
        theta, opt_state = carry
        grads = jax.grad(objective)(theta)
        updates, opt_state = optimizer.update(grads, opt_state)
        return (optax.apply_updates(theta, updates), opt_state), None

    (theta, _), _ = jax.jit(lambda c: jax.lax.scan(step, c, None, length=steps))(
        (theta, optimizer.init(theta))
    )
    return np.asarray(jax.nn.softmax(theta), np.float64)


def _pairwise_objective(loss_fn, **hp):
    weights = jnp.asarray(_pair_weights(), jnp.float32)
    chosen, rejected = jnp.asarray(PAIRS[:, 0]), jnp.asarray(PAIRS[:, 1])
    log_ref = jnp.log(jnp.asarray(PI_REF, jnp.float32))

    def objective(theta):
        logp = jax.nn.log_softmax(theta)
        loss, _ = loss_fn(logp[chosen], logp[rejected], log_ref[chosen], log_ref[rejected], **hp)
        return jnp.sum(weights * loss)

    return objective


def _total_variation(p, q):
    return 0.5 * np.abs(p - q).sum()


def _tilted(beta):
    """pi_ref exp(r / beta) / Z: the optimum of E_pi[r] - beta KL(pi || pi_ref)."""
    unnormalised = PI_REF * np.exp(REWARD / beta)
    return unnormalised / unnormalised.sum()


def test_dpo_expected_loss_minimiser_is_the_kl_regularised_optimum():
    """DPO: each pair's expected loss -p log s(beta d) - (1 - p) log s(-beta d), d = u_i - u_j,
    is minimised at beta d = logit(p) = r_i - r_j, so u = r / beta + const and
    pi* = pi_ref exp(r / beta) / Z (Rafailov et al. 2023, eq. 4)."""
    beta = 0.5
    pi = _minimise(_pairwise_objective(losses.dpo_loss, beta=beta))
    assert _total_variation(pi, _tilted(beta)) < 1e-3


def test_ipo_expected_loss_minimiser_solves_its_linear_system():
    """IPO: L(u) = sum_ij c_ij (u_i - u_j - tau)^2 with tau = 1 / (2 beta). Setting dL/du_k = 0
    and grouping the two orderings of each pair {k, j} gives

        sum_j (c_kj + c_jk) (u_k - u_j) = tau sum_j (c_kj - c_jk)   for every k,

    i.e. (D - S) u = tau b with S = c + c^T, D = diag(S 1), b = (c - c^T) 1: a graph-Laplacian
    system, solvable up to the constant that normalisation removes (Azar et al. 2023, sec. 5).
    Then pi* = pi_ref exp(u*) / Z. Unlike DPO, pi* depends on the pair-sampling weights."""
    beta = 0.5
    tau = 1.0 / (2.0 * beta)
    c = np.zeros((K, K))
    c[PAIRS[:, 0], PAIRS[:, 1]] = _pair_weights()
    S = c + c.T
    laplacian = np.diag(S.sum(1)) - S
    u_star = np.linalg.lstsq(laplacian, tau * (c - c.T).sum(1), rcond=None)[0]
    pi_star = PI_REF * np.exp(u_star)
    pi_star /= pi_star.sum()

    pi = _minimise(_pairwise_objective(losses.ipo_loss, beta=beta))
    assert _total_variation(pi, pi_star) < 1e-3
    # The IPO optimum differs from the DPO / RLHF one here (a check that the test can fail).
    assert _total_variation(pi_star, _tilted(beta)) > 1e-2


def test_kl_regularised_policy_gradient_reaches_the_tilted_policy():
    """Exact-expectation PPO: with one-token responses, per-token rewards
    r_y - beta (log pi(y) - log pi_ref(y)) from `kl_penalized_rewards` (k1), advantages from
    `gae` (gamma = lambda = 1, zero values), and the PPO surrogate at ratio 1 weighted by pi(y)
    (no gradient through the weights), the gradient is -grad_theta (E_pi[r] - beta KL(pi || pi_ref))
    because E_pi[grad log pi] = 0. The fixed point is pi* = pi_ref exp(r / beta) / Z
    (Ziegler et al. 2019; Rafailov et al. 2023 eq. 4)."""
    beta = 0.5
    scores = jnp.asarray(REWARD, jnp.float32)
    log_ref_Kx1 = jnp.log(jnp.asarray(PI_REF, jnp.float32))[:, None]
    mask_Kx1 = jnp.ones((K, 1))

    def objective(theta):
        logp_Kx1 = jax.nn.log_softmax(theta)[:, None]
        rewards, _ = kl_penalized_rewards(scores, logp_Kx1, log_ref_Kx1, mask_Kx1, kl_coef=beta)
        advantages, _ = gae(rewards, jnp.zeros_like(rewards), mask_Kx1, gamma=1.0, lam=1.0)
        loss_K, _ = losses.ppo_policy_loss(
            logp_Kx1,
            jax.lax.stop_gradient(logp_Kx1),
            advantages,
            mask_Kx1,
            aggregation="sequence_mean",
        )
        return jnp.sum(jax.lax.stop_gradient(jnp.exp(logp_Kx1[:, 0])) * loss_K)

    pi = _minimise(objective)
    assert _total_variation(pi, _tilted(beta)) < 1e-3
