"""GAE(γ, λ) against an independent NumPy computation (forward sums of discounted TD errors)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scalelab.algos.gae import gae


def reference_gae(rewards, values, next_values, terminated, done, gamma, lam):
    """A_t = Σ_l (γλ)^l δ_{t+l}, summed forward until the episode's last step (inclusive)."""
    t_len, n_env = rewards.shape
    deltas = rewards + gamma * (1.0 - terminated) * next_values - values
    adv = np.zeros_like(rewards, dtype=np.float64)
    for b in range(n_env):
        for t in range(t_len):
            total, weight = 0.0, 1.0
            for u in range(t, t_len):
                total += weight * deltas[u, b]
                if done[u, b]:
                    break
                weight *= gamma * lam
            adv[t, b] = total
    return adv, adv + values


@pytest.mark.parametrize("gamma,lam", [(0.99, 0.95), (0.5, 1.0), (0.0, 1.0), (0.9, 0.0)])
def test_gae_matches_numpy_with_termination_and_truncation(gamma, lam):
    rng = np.random.default_rng(0)
    t_len, n_env = 11, 4
    rewards = rng.normal(size=(t_len, n_env)).astype(np.float32)
    values = rng.normal(size=(t_len, n_env)).astype(np.float32)
    next_values = rng.normal(size=(t_len, n_env)).astype(np.float32)
    terminated = np.zeros((t_len, n_env), bool)
    truncated = np.zeros((t_len, n_env), bool)
    terminated[3, 0] = terminated[7, 1] = terminated[10, 2] = True
    truncated[5, 0] = truncated[2, 1] = truncated[4, 3] = True
    terminated[8, 3] = truncated[8, 3] = True  # both: a terminal state does not bootstrap
    done = terminated | truncated
    adv, ret = gae(jnp.asarray(rewards), jnp.asarray(values), jnp.asarray(next_values),
                   jnp.asarray(terminated), jnp.asarray(done), gamma, lam)
    ref_adv, ref_ret = reference_gae(rewards, values, next_values, terminated, done, gamma, lam)
    np.testing.assert_allclose(adv, ref_adv, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ret, ref_ret, rtol=1e-5, atol=1e-5)


def test_gae_hand_example():
    # One env, rewards 1, V = 0 everywhere except V(s'_1) = 10 where step 1 is truncated;
    # γ = 0.5, λ = 1. Episode 1 = steps 0-1 (truncated), episode 2 = steps 2-3 (terminated at 3).
    rewards = jnp.ones((4, 1))
    values = jnp.zeros((4, 1))
    next_values = jnp.array([[0.0], [10.0], [0.0], [7.0]])
    terminated = jnp.array([[False], [False], [False], [True]])
    done = jnp.array([[False], [True], [False], [True]])
    adv, ret = gae(rewards, values, next_values, terminated, done, 0.5, 1.0)
    # step 1: 1 + 0.5*10 = 6; step 0: 1 + 0.5*6 = 4; step 3: 1 (no bootstrap); step 2: 1.5
    np.testing.assert_allclose(ret[:, 0], [4.0, 6.0, 1.5, 1.0], rtol=1e-6)
    np.testing.assert_allclose(adv, ret)


def test_gae_traced_per_member_discounts():
    rng = np.random.default_rng(1)
    r, v, nv = (jnp.asarray(rng.normal(size=(3, 6, 2)), jnp.float32) for _ in range(3))
    term = jnp.zeros((3, 6, 2), bool).at[:, 2, 0].set(True)
    gammas = jnp.array([0.0, 0.9, 0.99])
    lams = jnp.array([1.0, 0.95, 0.5])
    adv, _ = jax.jit(jax.vmap(gae))(r, v, nv, term, term, gammas, lams)
    for i in range(3):
        ref, _ = reference_gae(*(np.asarray(x[i]) for x in (r, v, nv, term, term)),
                               float(gammas[i]), float(lams[i]))
        np.testing.assert_allclose(adv[i], ref, rtol=1e-5, atol=1e-5)
