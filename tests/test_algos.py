"""PPO-EWMA / PPG building blocks against independent NumPy computations: the parameter EWMA,
the decoupled clip and KL objectives, PPG's split optimizers and auxiliary phase."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scalelab import networks
from scalelab.algos import decoupled, ppg, ppo
from scalelab.algos.ewma import center_of_mass, ewma_init, ewma_update
from scalelab.algos.objectives import PolicyCoefs, categorical_kl, policy_objective


class TwoTower(nn.Module):
    """Separate policy/value towers with an auxiliary value head on the policy tower, named like
    `scalelab.networks` (policy_*, value_*, aux_value_head)."""

    num_actions: int = 3
    hidden: int = 8

    @nn.compact
    def __call__(self, obs, return_aux=False):
        x = obs.reshape(obs.shape[0], -1).astype(jnp.float32)
        pi = nn.tanh(nn.Dense(self.hidden, name="policy_encoder")(x))
        logits = nn.Dense(self.num_actions, name="policy_head")(pi)
        aux = nn.Dense(1, name="aux_value_head")(pi)[..., 0]
        v = nn.tanh(nn.Dense(self.hidden, name="value_encoder")(x))
        value = nn.Dense(1, name="value_head")(v)[..., 0]
        return (logits, value, aux) if return_aux else (logits, value)


def log_softmax_np(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


# ------------------------------------------------------------------------------------ EWMA


def test_ewma_matches_numpy_weighted_average_with_bias_correction():
    rng = np.random.default_rng(0)
    thetas = [{"w": rng.normal(size=(3, 2)), "b": rng.normal(size=4)} for _ in range(7)]
    decay = 0.7
    state = ewma_init(jax.tree.map(jnp.float32, thetas[0]))
    update = jax.jit(ewma_update)
    for t in range(1, len(thetas)):
        state = update(state, jax.tree.map(jnp.float32, thetas[t]), decay)
        weights = decay ** np.arange(t, -1, -1.0)  # β^{t-k} for k = 0..t
        for name in ("w", "b"):
            expected = sum(w * th[name] for w, th in zip(weights, thetas[: t + 1], strict=True))
            np.testing.assert_allclose(state.params[name], expected / weights.sum(), rtol=1e-5)
        np.testing.assert_allclose(state.weight, weights.sum(), rtol=1e-6)
    # a fresh average is its start exactly (bias-corrected, not shrunk towards zero)
    np.testing.assert_array_equal(ewma_init(thetas[3]).params["w"], thetas[3]["w"])


def test_ewma_with_decay_zero_is_the_latest_parameters():
    state = ewma_init({"w": jnp.ones(3)})
    for v in (2.0, -5.0, 7.5):
        state = ewma_update(state, {"w": jnp.full(3, v)}, 0.0)
        np.testing.assert_array_equal(state.params["w"], v)


def test_center_of_mass_of_reference_decay():
    # 0.889 is the decay chosen so that the average's mean age is about 8 updates
    assert center_of_mass(0.889) == pytest.approx(8.0, abs=0.01)
    weights = 0.889 ** np.arange(10_000)
    assert (weights * np.arange(10_000)).sum() / weights.sum() == pytest.approx(
        center_of_mass(0.889), rel=1e-9)


# ------------------------------------------------------------------------------ objectives


def objective_case(seed=0, n=7, a=4):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, a)).astype(np.float32)
    prox_logits = (logits + 0.5 * rng.normal(size=(n, a))).astype(np.float32)
    actions = rng.integers(0, a, size=n)
    lp = log_softmax_np(logits)[np.arange(n), actions]
    # behaviour log-probs: mostly near π, one very stale sample whose weight π/π_b = 500
    behaviour = (lp - rng.normal(scale=0.4, size=n)).astype(np.float32)
    behaviour[2] = lp[2] - np.log(500.0)
    adv = rng.normal(size=n).astype(np.float32)
    return logits, prox_logits, actions, behaviour, adv


def test_kl_penalty_objective_matches_hand_computation():
    logits, prox_logits, actions, behaviour, adv = objective_case()
    c_kl, cap = 0.7, 100.0
    terms = jax.jit(policy_objective, static_argnums=5)(
        jax.nn.log_softmax(logits), actions, behaviour, jax.nn.log_softmax(prox_logits), adv,
        "kl", PolicyCoefs(0.2, c_kl, cap))
    n = len(actions)
    p, q = np.exp(log_softmax_np(prox_logits)), np.exp(log_softmax_np(logits))
    w = np.minimum(q[np.arange(n), actions] / np.exp(behaviour), cap)
    kl = np.mean([np.sum(p[i] * np.log(p[i] / q[i])) for i in range(n)])
    np.testing.assert_allclose(terms.kl, kl, rtol=1e-5)
    np.testing.assert_allclose(terms.surrogate, np.mean(-adv * w), rtol=1e-5)
    np.testing.assert_allclose(terms.loss, np.mean(-adv * w) + c_kl * kl, rtol=1e-5)
    assert w[2] == cap  # the stale sample is capped


def test_kl_penalty_gradient_is_policy_minus_proximal():
    # d/dlogits of c·mean_s KL(p‖softmax(logits)) = c (softmax(logits) - p) / n
    logits, prox_logits, actions, behaviour, _ = objective_case(1)
    n = len(actions)

    def kl_part(lg):
        return policy_objective(jax.nn.log_softmax(lg), actions, behaviour,
                                jax.nn.log_softmax(prox_logits), jnp.zeros(n), "kl",
                                PolicyCoefs(0.2, 0.5, 100.0)).loss

    grad = jax.grad(kl_part)(logits)
    p, q = np.exp(log_softmax_np(prox_logits)), np.exp(log_softmax_np(logits))
    np.testing.assert_allclose(grad, 0.5 * (q - p) / n, rtol=1e-4, atol=1e-7)


def test_decoupled_clip_objective_matches_hand_computation():
    logits, prox_logits, actions, behaviour, adv = objective_case(2)
    eps, cap = 0.2, 100.0
    terms = policy_objective(jax.nn.log_softmax(logits), actions, behaviour,
                             jax.nn.log_softmax(prox_logits), adv, "clip",
                             PolicyCoefs(eps, 0.0, cap))
    n = len(actions)
    pi = np.exp(log_softmax_np(logits))[np.arange(n), actions]
    prox = np.exp(log_softmax_np(prox_logits))[np.arange(n), actions]
    b = np.maximum(np.exp(behaviour), pi / cap)  # the capped behaviour probability
    r = pi / prox
    expected = np.mean(np.maximum(-adv * pi / b, -adv * np.clip(r, 1 - eps, 1 + eps) * prox / b))
    np.testing.assert_allclose(terms.loss, expected, rtol=1e-5)
    np.testing.assert_allclose(terms.clip_frac, np.mean(np.abs(r - 1) > eps), rtol=1e-6)
    assert 0 < terms.clip_frac < 1


def test_clip_objective_with_behaviour_as_proximal_is_ppo():
    logits, _, actions, behaviour, adv = objective_case(3)
    behaviour = behaviour.copy()
    behaviour[2] = behaviour[3]  # no capped sample: PPO has no cap
    params = {"logits": logits, "values": np.zeros(len(actions), np.float32)}
    batch = ppo.Batch(obs=np.arange(len(actions)), actions=actions, old_log_probs=behaviour,
                      old_values=np.zeros(len(actions), np.float32), advantages=adv,
                      returns=np.zeros(len(actions), np.float32))

    def table_apply(p, obs):
        return p["logits"][obs], p["values"][obs]

    _, ppo_info = ppo.ppo_loss(params, table_apply, batch, ppo.LossCoefs(0.2, 0.0, 0.0))
    terms = policy_objective(jax.nn.log_softmax(logits), actions, behaviour, None,
                             ppo.normalize_advantages(adv), "clip", PolicyCoefs(0.2, 0.0, 100.0))
    np.testing.assert_allclose(terms.loss, ppo_info.policy, rtol=1e-5)
    np.testing.assert_allclose(terms.clip_frac, ppo_info.clip_frac)
    with pytest.raises(ValueError, match="kl"):
        policy_objective(jax.nn.log_softmax(logits), actions, behaviour, None, adv, "kl",
                         PolicyCoefs(0.2, 1.0, 100.0))


def test_categorical_kl_against_numpy():
    rng = np.random.default_rng(4)
    p, q = log_softmax_np(rng.normal(size=(5, 6))), log_softmax_np(rng.normal(size=(5, 6)))
    expected = (np.exp(p) * (p - q)).sum(1)
    np.testing.assert_allclose(categorical_kl(p, q), expected, rtol=1e-5)
    np.testing.assert_allclose(categorical_kl(p, p), 0.0, atol=1e-7)


# ------------------------------------------------------------------------------------- PPG


def two_tower_setup(seed=0, n=32, obs_dim=5):
    net = TwoTower()
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n, obs_dim)).astype(np.float32)
    params = net.init(jax.random.PRNGKey(seed), obs[:1])
    logits, values = net.apply(params, obs)
    actions = rng.integers(0, 3, size=n)
    batch = ppo.Batch(
        obs=obs, actions=actions,
        old_log_probs=jax.nn.log_softmax(logits)[np.arange(n), actions],
        old_values=values, advantages=rng.normal(size=n).astype(np.float32),
        returns=rng.normal(size=n).astype(np.float32))
    return net, params, batch


def test_param_labels_split_towers():
    _, params, _ = two_tower_setup()
    labels = networks.param_labels(params)["params"]
    assert {k: set(jax.tree.leaves(v)) for k, v in labels.items()} == {
        "policy_encoder": {"policy"}, "policy_head": {"policy"}, "aux_value_head": {"policy"},
        "value_encoder": {"value"}, "value_head": {"value"}}
    with pytest.raises(ValueError, match="separate policy and value"):
        ppg.check_phasic_params({"params": {"dense": {"kernel": jnp.ones(2)}}})


def test_value_only_steps_leave_the_policy_unchanged():
    # Adam with momentum would keep moving the policy on zero gradients if the two phases
    # shared one optimizer state; PPG's value optimizer must not touch the policy at all.
    net, params, batch = two_tower_setup()
    opts = ppg.phasic_optimizers(1e-5)
    states = {k: o.init(params) for k, o in opts.items()}
    coefs = ppo.LossCoefs(0.2, 0.5, 0.01)
    pcoefs = PolicyCoefs(0.2, 1.0, 100.0)

    @functools.partial(jax.jit, static_argnums=2)
    def step(params, state, part):
        grads = jax.grad(lambda p: decoupled.decoupled_loss(
            p, net.apply, batch, None, "clip", coefs, pcoefs, part)[0])(params)
        return ppo.gradient_step(params, state, grads, opts[part], 1e-2, 0.5)[:2]

    params, states["policy"] = step(params, states["policy"], "policy")  # builds momentum
    before = params
    for _ in range(3):
        params, states["value"] = step(params, states["value"], "value")
    labels = networks.param_labels(params)
    moved = jax.tree.map(lambda a, b: bool(np.any(np.asarray(a) != np.asarray(b))),
                         params, before)
    for label, did_move in zip(jax.tree.leaves(labels), jax.tree.leaves(moved), strict=True):
        assert did_move == (label == "value")


def test_policy_phase_of_ppg_steps_each_tower_with_its_own_optimizer():
    net, params, batch = two_tower_setup(1)
    opts = ppg.phasic_optimizers(1e-5)
    states = {k: o.init(params) for k, o in opts.items()}
    cfg = decoupled.PhaseConfig("ppg", "clip", update_epochs=2, value_epochs=3,
                                num_minibatches=4)
    new, new_states, ewma, info = jax.jit(lambda p, s, b: decoupled.policy_phase(
        cfg, p, s, None, b, jax.random.PRNGKey(0), net.apply, opts,
        ppo.LossCoefs(0.2, 0.5, 0.01), PolicyCoefs(0.2, 1.0, 100.0), 0.9, 1e-3, 0.5))(
        params, states, batch)
    assert ewma is None
    # Adam step counts: 3 value epochs x 4 minibatches, 2 policy epochs x 4 minibatches
    counts = {k: [int(x) for x in jax.tree.leaves(s) if np.ndim(x) == 0]
              for k, s in new_states.items()}
    assert set(counts["value"]) == {12} and set(counts["policy"]) == {8}
    assert set(counts["aux"]) == {0}
    assert info.loss.value > 0 and info.loss.entropy > 0
    changed = jax.tree.map(lambda a, b: bool(np.any(a != b)), new, params)
    assert all(jax.tree.leaves(changed["params"]["value_head"]))
    assert all(jax.tree.leaves(changed["params"]["policy_head"]))


def aux_setup(n_pi=3, n=16, seed=0):
    net, params, _ = two_tower_setup(seed, n=n)
    rng = np.random.default_rng(seed + 10)
    buffer = ppg.aux_buffer_init(n_pi, n, (5,), jnp.float32)
    for slot in range(n_pi):
        buffer = ppg.aux_buffer_store(buffer, slot, rng.normal(size=(n, 5)).astype(np.float32),
                                      (3.0 + rng.normal(size=n)).astype(np.float32))
    aux_apply = lambda p, o: net.apply(p, o, return_aux=True)  # noqa: E731
    return net, params, buffer, aux_apply


def run_aux(beta_clone, lr=3e-2, epochs=12, seed=0):
    net, params, buffer, aux_apply = aux_setup(seed=seed)
    opt = ppg.phasic_optimizers(1e-5)["aux"]
    fn = jax.jit(ppg.aux_phase, static_argnums=(4, 5, 9, 10))
    new, _, info = fn(params, opt.init(params), buffer, jax.random.PRNGKey(1), aux_apply, opt,
                      beta_clone, lr, 10.0, epochs, 4)
    obs = buffer.obs.reshape(-1, 5)
    kl = categorical_kl(jax.nn.log_softmax(net.apply(params, obs)[0]),
                        jax.nn.log_softmax(net.apply(new, obs)[0])).mean()
    return params, new, info, float(kl), buffer, aux_apply


def test_aux_phase_kl_is_zero_at_start_and_cloning_keeps_policy_close():
    params, new, info, kl_clone, buffer, aux_apply = run_aux(beta_clone=1.0)
    assert float(info.kl_start) == pytest.approx(0.0, abs=1e-7)
    _, _, _, kl_free, _, _ = run_aux(beta_clone=0.0)
    # without cloning the shared features chase the value targets and the policy drifts
    assert kl_free > 1e-3
    assert kl_clone < 0.2 * kl_free
    # the auxiliary head learned the returns (mean 3): its loss fell well below the start's
    obs, ret = buffer.obs.reshape(-1, 5), buffer.returns.reshape(-1)
    start = 0.5 * np.mean((np.asarray(aux_apply(params, obs)[2]) - ret) ** 2)
    end = 0.5 * np.mean((np.asarray(aux_apply(new, obs)[2]) - ret) ** 2)
    assert end < 0.5 * start


def test_aux_buffer_store_and_predicted_bytes():
    buffer = ppg.aux_buffer_init(4, 6, (8, 8, 3), jnp.uint8)
    obs = jnp.full((6, 8, 8, 3), 7, jnp.uint8)
    buffer = ppg.aux_buffer_store(buffer, jnp.int32(2), obs, jnp.arange(6.0))
    assert buffer.obs.dtype == jnp.uint8
    np.testing.assert_array_equal(buffer.obs[2], 7)
    np.testing.assert_array_equal(np.asarray(buffer.obs)[[0, 1, 3]], 0)
    np.testing.assert_array_equal(buffer.returns[2], np.arange(6.0))
    nbytes = sum(x.nbytes for x in jax.tree.leaves(buffer))
    assert ppg.aux_buffer_bytes(4, 6, (8, 8, 3), np.uint8) == nbytes
    # Procgen at PPG's defaults: 32 x 64 x 256 frames of 64x64x3 uint8 (+ float32 returns)
    assert ppg.aux_buffer_bytes(32, 64 * 256, (64, 64, 3), np.uint8) == 32 * 64 * 256 * (
        64 * 64 * 3 + 4)


# ------------------------------------------------------------------ networks' auxiliary head


@pytest.mark.parametrize("family,obs_shape", [
    ("mlp", (6,)), pytest.param("mnist_cnn", (28, 28, 1), marks=pytest.mark.slow)])
def test_aux_value_head_counts_are_exact_and_it_pads(family, obs_shape):
    from scalelab import networks

    base = networks.NetworkConfig(family, width=0.25)
    cfg = networks.NetworkConfig(family, width=0.25, aux_value_head=True)
    params = networks.init_params(cfg, jax.random.PRNGKey(0), obs_shape, 5)
    counted = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
    assert networks.param_count(cfg, obs_shape, 5) == counted
    units = params["params"]["aux_value_head"]["kernel"].shape[0]
    assert counted - networks.param_count(base, obs_shape, 5) == units + 1
    assert (networks.forward_flops(cfg, obs_shape, 5)
            - networks.forward_flops(base, obs_shape, 5)) == 2 * units
    # the aux head reads the policy tower: its value is features_pi @ kernel + bias
    module = networks.build(cfg, 5)
    obs = jax.random.uniform(jax.random.PRNGKey(1), (3, *obs_shape))
    logits, value, aux = module.apply(params, obs, return_aux=True)
    assert aux.shape == value.shape == (3,)
    np.testing.assert_array_equal(module.apply(params, obs)[0], logits)
    assert networks.param_labels(params)["params"]["aux_value_head"]["kernel"] == "policy"
    # zero-padded into a wider group it computes the same three outputs
    wide = networks.NetworkConfig(family, width=0.5, aux_value_head=True)
    padded = networks.pad_params(params, cfg, wide, obs_shape, 5)
    for a, b in zip(networks.build(wide, 5).apply(padded, obs, return_aux=True),
                    (logits, value, aux), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="aux_value_head"):
        networks.build(base, 5).apply(
            networks.init_params(base, jax.random.PRNGKey(0), obs_shape, 5), obs,
            return_aux=True)
    with pytest.raises(ValueError, match="aux_value_head"):
        networks.group_config([base, cfg])
