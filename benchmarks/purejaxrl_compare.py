"""scalelab vs a minimal PureJaxRL-style trainer on PureJaxRL's CartPole config, side by side.

Both train CartPole-v1 with the same hyperparameters (4 envs x 128 steps, 4 epochs of 4
minibatches, Adam lr 2.5e-4 annealed linearly per update, gamma .99, lambda .95, clip .2,
entropy .01, value .5, grad norm .5, two 64-unit tanh layers per tower): scalelab through the
real `scalelab.train` path (TrainConfig.preset("CartPole-v1")), the reference as one jitted
function of the seeds' keys (vmapped over seeds) written here in PureJaxRL's style: one
`lax.scan` over updates, no host sync, GAE on `done` without truncation bootstrapping.

The two alternate (ours, reference, ours, ...) in one process; every repetition prints a JSON
line with wall and CPU seconds (`time.process_time`, all threads) and the load average, and a
summary line per seed count gives the medians and the ratios scalelab / reference.

    PYTHONPATH=. python benchmarks/purejaxrl_compare.py [--seeds 1 8] [--reps 3]
        [--total 500000] [--out benchmarks/results/purejaxrl_compare.jsonl] [--breakdown]

`--breakdown` instead times the phases of scalelab's path once per seed count (where the
CPU-seconds go: plan, init_state, compile, execute).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

import envs_jax
import scalelab
from benchmarks.jsonl import emit
from scalelab.config import TrainConfig
from scalelab.sweep.plan import make_plan
from scalelab.sweep.run import FusedRunner, execute
from scalelab.sweep.spec import parse_spec, spec_for_config

ENV = "CartPole-v1"


HIDDEN = 64  # units of each tanh layer of both towers (PureJaxRL's ActorCritic)


class _Tower(nn.Module):
    """Two tanh layers of `hidden` units and a linear head of `out` units (orthogonal init)."""

    hidden: int
    out: int
    head_scale: float

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for _ in range(2):
            x = jnp.tanh(nn.Dense(self.hidden, kernel_init=nn.initializers.orthogonal(np.sqrt(2)),
                                  bias_init=nn.initializers.zeros)(x))
        return nn.Dense(self.out, kernel_init=nn.initializers.orthogonal(self.head_scale),
                        bias_init=nn.initializers.zeros)(x)


class _ActorCritic(nn.Module):
    num_actions: int
    hidden: int

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        logits = _Tower(self.hidden, self.num_actions, 0.01)(x)
        value = _Tower(self.hidden, 1, 1.0)(x)[..., 0]
        return logits, value


class _Step(NamedTuple):
    obs: jax.Array
    action: jax.Array
    log_prob: jax.Array
    value: jax.Array
    reward: jax.Array
    done: jax.Array


def make_reference_train(cfg: TrainConfig) -> Callable[[jax.Array], dict[str, jax.Array]]:
    """train(key) -> {"episode_return": mean return of episodes ended in each update (U,)}.

    Reads cfg's PPO settings (num_envs, rollout_length, total_interactions, epochs,
    minibatches, lr annealed if anneal_lr, gamma, gae_lambda, clip_eps, coefficients,
    max_grad_norm, adam_eps); the network is fixed (two HIDDEN-unit tanh layers per tower).
    """
    env, env_params = envs_jax.make(ENV)
    net = _ActorCritic(env.num_actions, HIDDEN)
    num_updates = cfg.num_updates
    steps_per_update = cfg.update_epochs * cfg.num_minibatches
    anneal = 1.0 if cfg.anneal_lr else 0.0
    schedule = lambda count: cfg.lr * (1.0 - anneal * (count // steps_per_update) / num_updates)  # noqa: E731
    tx = optax.chain(optax.clip_by_global_norm(cfg.max_grad_norm),
                     optax.adam(schedule, eps=cfg.adam_eps))
    batch = cfg.batch_size
    mb_size = batch // cfg.num_minibatches
    v_reset = jax.vmap(env.reset, in_axes=(0, None))
    v_step = jax.vmap(env.step, in_axes=(0, 0, 0, None))

    def loss_fn(params: Any, mb: tuple) -> jax.Array:
        obs, action, old_logp, old_v, adv, target = mb
        logits, v = net.apply(params, obs)
        logp_all = jax.nn.log_softmax(logits)
        logp = jnp.take_along_axis(logp_all, action[:, None], axis=-1)[:, 0]
        v_clip = old_v + jnp.clip(v - old_v, -cfg.clip_eps, cfg.clip_eps)
        v_loss = 0.5 * jnp.maximum((v - target) ** 2, (v_clip - target) ** 2).mean()
        ratio = jnp.exp(logp - old_logp)
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        pg = -jnp.minimum(ratio * adv,
                          jnp.clip(ratio, 1 - cfg.clip_eps, 1 + cfg.clip_eps) * adv).mean()
        entropy = -(jnp.exp(logp_all) * logp_all).sum(-1).mean()
        return pg + cfg.vf_coef * v_loss - cfg.ent_coef * entropy

    def train(key: jax.Array) -> dict[str, jax.Array]:
        key, k_init, k_reset = jax.random.split(key, 3)
        obs_dim = env.observation_space(env_params).shape
        params = net.init(k_init, jnp.zeros((1, *obs_dim)))
        opt_state = tx.init(params)
        obs, env_state = v_reset(jax.random.split(k_reset, cfg.num_envs), env_params)
        ep_ret = jnp.zeros(cfg.num_envs)

        def env_step(carry: tuple, _: None) -> tuple[tuple, tuple]:
            params, env_state, obs, ep_ret, key = carry
            key, k_act, k_env = jax.random.split(key, 3)
            logits, value = net.apply(params, obs)
            action = jax.random.categorical(k_act, logits)
            logp = jnp.take_along_axis(jax.nn.log_softmax(logits), action[:, None], -1)[:, 0]
            obs2, env_state, reward, term, trunc, _ = v_step(
                jax.random.split(k_env, cfg.num_envs), env_state, action, env_params)
            done = term | trunc
            ep_ret = ep_ret + reward
            finished = (jnp.where(done, ep_ret, 0.0).sum(), done.sum())
            ep_ret = jnp.where(done, 0.0, ep_ret)
            step = _Step(obs, action, logp, value, reward, done.astype(jnp.float32))
            return (params, env_state, obs2, ep_ret, key), (step, finished)

        def update(carry: tuple, _: None) -> tuple[tuple, jax.Array]:
            params, opt_state, env_state, obs, ep_ret, key = carry
            (params, env_state, obs, ep_ret, key), (traj, finished) = lax.scan(
                env_step, (params, env_state, obs, ep_ret, key), None, cfg.rollout_length)
            _, last_v = net.apply(params, obs)

            def gae_step(carry: tuple, s: _Step) -> tuple[tuple, jax.Array]:
                adv, next_v = carry
                delta = s.reward + cfg.gamma * next_v * (1 - s.done) - s.value
                adv = delta + cfg.gamma * cfg.gae_lambda * (1 - s.done) * adv
                return (adv, s.value), adv

            _, adv = lax.scan(gae_step, (jnp.zeros_like(last_v), last_v), traj, reverse=True)
            data = (traj.obs, traj.action, traj.log_prob, traj.value, adv, adv + traj.value)
            data = jax.tree.map(lambda x: x.reshape(batch, *x.shape[2:]), data)

            def epoch(carry: tuple, _: None) -> tuple[tuple, None]:
                params, opt_state, key = carry
                key, k_perm = jax.random.split(key)
                perm = jax.random.permutation(k_perm, batch)
                mbs = jax.tree.map(
                    lambda x: x[perm].reshape(cfg.num_minibatches, mb_size, *x.shape[1:]), data)

                def minibatch(carry: tuple, mb: tuple) -> tuple[tuple, None]:
                    params, opt_state = carry
                    grads = jax.grad(loss_fn)(params, mb)
                    updates, opt_state = tx.update(grads, opt_state, params)
                    return (optax.apply_updates(params, updates), opt_state), None

                (params, opt_state), _ = lax.scan(minibatch, (params, opt_state), mbs)
                return (params, opt_state, key), None

            (params, opt_state, key), _ = lax.scan(
                epoch, (params, opt_state, key), None, cfg.update_epochs)
            ret_sum, count = finished[0].sum(), finished[1].sum()
            mean_ret = jnp.where(count > 0, ret_sum / jnp.maximum(count, 1), jnp.nan)
            return (params, opt_state, env_state, obs, ep_ret, key), mean_ret

        _, returns = lax.scan(update, (params, opt_state, env_state, obs, ep_ret, key), None,
                              num_updates)
        return {"episode_return": returns}

    return train


def _load() -> list[float]:
    return list(os.getloadavg())


def _timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def run_reference(cfg: TrainConfig, seeds: int) -> dict[str, Any]:
    """One fresh jit + run of the reference over `seeds` seeds (compile counted separately)."""
    keys = jax.vmap(jax.random.PRNGKey)(jnp.arange(seeds, dtype=jnp.uint32))
    load = _load()
    w0, c0 = time.perf_counter(), time.process_time()
    compiled, compile_wall, compile_cpu = _timed(
        lambda: jax.jit(jax.vmap(make_reference_train(cfg))).lower(keys).compile())
    out, run_wall, run_cpu = _timed(lambda: jax.tree.map(np.asarray, compiled(keys)))
    ret = out["episode_return"]
    return {"trainer": "reference", "seeds": seeds, "wall_s": time.perf_counter() - w0,
            "cpu_s": time.process_time() - c0, "compile_wall_s": compile_wall,
            "compile_cpu_s": compile_cpu, "run_wall_s": run_wall, "run_cpu_s": run_cpu,
            "final_return": float(np.nanmean(ret[:, -20:])), "load_before": load,
            "load_after": _load()}


def run_scalelab(config: TrainConfig, seeds: int) -> dict[str, Any]:
    """One `scalelab.train(config, seeds)` from scratch (fresh runner: init, compile, run)."""
    load = _load()
    result, wall, cpu = _timed(lambda: scalelab.train(config, seeds))
    return {"trainer": "scalelab", "seeds": seeds, "wall_s": wall, "cpu_s": cpu,
            "compile_wall_s": result.compile_seconds, "run_wall_s": result.train_seconds,
            "final_return": float(np.nanmean(result.score[:, -2:])), "load_before": load,
            "load_after": _load()}


def scalelab_breakdown(config: TrainConfig, seeds: int) -> dict[str, Any]:
    """Wall and CPU seconds of each phase of what `scalelab.train` runs: spec + plan + runner,
    `init_state`, compiling the chunk program(s), then `execute` (chunks + host work)."""
    phases: dict[str, dict[str, float]] = {}
    load = _load()

    def phase(name: str, fn: Callable[[], Any]) -> Any:
        out, wall, cpu = _timed(fn)
        phases[name] = {"wall_s": wall, "cpu_s": cpu}
        return out

    runner = phase("plan", lambda: FusedRunner(make_plan(parse_spec(
        spec_for_config(config, seeds), "<train>"))))
    state = phase("init_state", lambda: jax.block_until_ready(runner.init_state()))
    phase("compile", lambda: [runner.compiled_chunk(state, n)
                              for n in sorted({n for _, n in runner.plan.chunks})])
    phase("execute", lambda: jax.block_until_ready(execute(runner, state)[0]))
    return {"trainer": "scalelab_breakdown", "seeds": seeds, "phases": phases,
            "chunks": len(runner.plan.chunks), "load_before": load, "load_after": _load()}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--total", type=int, default=500_000, help="interactions per seed")
    ap.add_argument("--label", default="", help="free text stored with every line")
    ap.add_argument("--out", type=Path, default=None, help="also append the lines here")
    ap.add_argument("--breakdown", action="store_true",
                    help="only time scalelab's phases (plan, init, compile, execute) once")
    args = ap.parse_args(argv)
    config = TrainConfig.preset(ENV, total_interactions=args.total)
    # Imports (gymnax pulls in seaborn and scipy) and the backend start before any timing, so
    # that neither trainer pays them.
    jax.block_until_ready(envs_jax.make(ENV)[0].reset(jax.random.PRNGKey(0)))
    if args.breakdown:
        for seeds in args.seeds:
            row = scalelab_breakdown(config, seeds)
            row.update(bench="purejaxrl_compare", label=args.label, total_interactions=args.total,
                       device=jax.devices()[0].platform)
            emit(row, args.out)
        return
    for seeds in args.seeds:
        rows: dict[str, list[dict[str, Any]]] = {"scalelab": [], "reference": []}
        for rep in range(args.reps):
            for name in ("scalelab", "reference"):
                row = (run_scalelab(config, seeds) if name == "scalelab"
                       else run_reference(config, seeds))
                row.update(bench="purejaxrl_compare", rep=rep, total_interactions=args.total,
                           label=args.label, device=jax.devices()[0].platform)
                rows[name].append(row)
                emit(row, args.out)
        med = {name: {k: statistics.median(r[k] for r in rs) for k in ("wall_s", "cpu_s")}
               for name, rs in rows.items()}
        emit({"bench": "purejaxrl_compare_summary", "seeds": seeds, "reps": args.reps,
               "label": args.label, "median": med,
               "wall_ratio": med["scalelab"]["wall_s"] / med["reference"]["wall_s"],
               "cpu_ratio": med["scalelab"]["cpu_s"] / med["reference"]["cpu_s"],
               "load_avg_1m": [r["load_before"][0] for rs in rows.values() for r in rs],
               "device": jax.devices()[0].platform}, args.out)


if __name__ == "__main__":
    main()
