"""PPO loss terms, gradient clipping and the Adam step against hand computations in NumPy."""

import jax
import jax.numpy as jnp
import numpy as np

from scalelab.algos import ppo


def table_apply(params, obs):
    """A 'network' that looks its outputs up by sample index: logits (n, A), value (n,)."""
    return params["logits"][obs], params["values"][obs]


def tiny_batch():
    rng = np.random.default_rng(0)
    n, a = 6, 3
    params = {"logits": rng.normal(size=(n, a)).astype(np.float32),
              "values": rng.normal(size=n).astype(np.float32)}
    actions = np.array([0, 1, 2, 1, 0, 2])
    # old log-probs chosen so that ratios straddle both clip edges (ε = 0.2)
    logp = np.log(np.exp(params["logits"]) / np.exp(params["logits"]).sum(1, keepdims=True))
    new_lp = logp[np.arange(n), actions]
    old_lp = new_lp - np.log([1.5, 0.6, 1.1, 0.95, 1.3, 0.7])
    batch = ppo.Batch(
        obs=np.arange(n), actions=actions, old_log_probs=old_lp.astype(np.float32),
        old_values=(params["values"] + np.array([0.5, -0.1, 0.0, -0.4, 0.05, 0.3])).astype(
            np.float32),
        advantages=np.array([1.0, -2.0, 0.5, 3.0, -1.0, 0.2], np.float32),
        returns=rng.normal(size=n).astype(np.float32),
    )
    return params, batch, logp


def hand_loss(params, batch, logp, eps, vf, ent):
    n = len(batch.actions)
    ratio = np.exp(logp[np.arange(n), batch.actions] - batch.old_log_probs)
    adv = (batch.advantages - batch.advantages.mean()) / (batch.advantages.std() + 1e-8)
    pg = np.mean([-min(r * a, np.clip(r, 1 - eps, 1 + eps) * a)
                  for r, a in zip(ratio, adv, strict=True)])
    v, v_old, ret = params["values"], batch.old_values, batch.returns
    v_clip = v_old + np.clip(v - v_old, -eps, eps)
    vl = np.mean(0.5 * np.maximum((v - ret) ** 2, (v_clip - ret) ** 2))
    entropy = np.mean(-(np.exp(logp) * logp).sum(1))
    kl = np.mean((ratio - 1) - np.log(ratio))
    clip_frac = np.mean(np.abs(ratio - 1) > eps)
    return pg + vf * vl - ent * entropy, pg, vl, entropy, kl, clip_frac


def test_loss_terms_match_hand_computation():
    params, batch, logp = tiny_batch()
    coefs = ppo.LossCoefs(clip_eps=0.2, vf_coef=0.5, ent_coef=0.01)
    total, info = jax.jit(ppo.ppo_loss, static_argnums=1)(params, table_apply, batch, coefs)
    expected = hand_loss(params, batch, logp, 0.2, 0.5, 0.01)
    got = (total, info.policy, info.value, info.entropy, info.approx_kl, info.clip_frac)
    np.testing.assert_allclose(np.array(got), np.array(expected), rtol=1e-5, atol=1e-6)
    assert 0 < info.clip_frac < 1  # the batch exercises both clipped and unclipped samples
    assert info.total == total


def test_clipped_terms_have_no_gradient():
    # Samples whose ratio left [1-ε, 1+ε] in the advantage's favoured direction contribute no
    # policy gradient: a finite-difference check on those logits gives zero.
    params, batch, _ = tiny_batch()
    coefs = ppo.LossCoefs(0.2, 0.0, 0.0)
    grads = jax.grad(lambda p: ppo.ppo_loss(p, table_apply, batch, coefs)[0])(params)
    ratio = np.array([1.5, 0.6, 1.1, 0.95, 1.3, 0.7])
    adv = batch.advantages - batch.advantages.mean()
    frozen = ((ratio > 1.2) & (adv > 0)) | ((ratio < 0.8) & (adv < 0))
    assert frozen.any() and (~frozen).any()
    np.testing.assert_array_equal(np.asarray(grads["logits"])[frozen], 0.0)
    assert np.all(np.abs(np.asarray(grads["logits"])[~frozen]).sum(1) > 0)


def test_global_norm_clip_and_adam_steps_match_numpy():
    g1 = {"a": jnp.array([3.0, 4.0]), "b": jnp.array([[12.0]])}  # ‖g‖ = 13
    g2 = {"a": jnp.array([0.1, -0.2]), "b": jnp.array([[0.05]])}  # ‖g‖ < max_norm
    params = {"a": jnp.array([1.0, -1.0]), "b": jnp.array([[0.5]])}
    lr, max_norm, eps = 0.1, 0.5, 1e-5
    opt = ppo.adam(eps)
    state = opt.init(params)
    p, state, n1 = ppo.gradient_step(params, state, g1, opt, lr, max_norm)
    p, state, n2 = ppo.gradient_step(p, state, g2, opt, lr, max_norm)
    np.testing.assert_allclose([n1, n2], [13.0, np.sqrt(0.01 + 0.04 + 0.0025)], rtol=1e-6)

    flat = lambda t: np.concatenate([np.ravel(t["a"]), np.ravel(t["b"])])  # noqa: E731
    x, m, v = flat(params).astype(np.float64), 0.0, 0.0
    for t, g in enumerate([flat(g1) * (0.5 / 13.0), flat(g2)], start=1):
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g**2
        x = x - lr * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + eps)
    np.testing.assert_allclose(flat(p), x, rtol=1e-5)


def test_full_batch_update_equals_sequential_gradient_steps():
    # With one minibatch the permutation cannot matter: two epochs = two full-batch steps.
    params, batch, _ = tiny_batch()
    coefs = ppo.LossCoefs(0.2, 0.5, 0.01)
    opt = ppo.adam(1e-5)
    p_upd, _, info = ppo.ppo_update(
        params, opt.init(params), batch, jax.random.PRNGKey(3), table_apply, opt, coefs,
        lr=1e-2, max_grad_norm=0.5, update_epochs=2, num_minibatches=1)
    p, s = params, opt.init(params)
    norms = []
    for _ in range(2):
        g = jax.grad(lambda q: ppo.ppo_loss(q, table_apply, batch, coefs)[0])(p)
        p, s, n = ppo.gradient_step(p, s, g, opt, 1e-2, 0.5)
        norms.append(n)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), p_upd, p)
    np.testing.assert_allclose(info.grad_norm, np.mean(norms), rtol=1e-5)


def test_shuffle_minibatches_partitions_the_batch():
    n, mbs = 12, 3
    batch = ppo.Batch(*(jnp.arange(n) + 100 * i for i in range(6)))
    shuffle = jax.jit(ppo.shuffle_minibatches, static_argnums=2)
    orders = []
    for key in jax.random.split(jax.random.PRNGKey(0), 2):
        mb = shuffle(key, batch, mbs)
        assert mb.obs.shape == (mbs, n // mbs)
        order = np.asarray(mb.obs).ravel()
        assert sorted(order.tolist()) == list(range(n))
        for i, field in enumerate(mb):  # every field permuted alike: samples stay whole
            np.testing.assert_array_equal(np.asarray(field).ravel(), order + 100 * i)
        orders.append(order)
    assert not np.array_equal(*orders)
