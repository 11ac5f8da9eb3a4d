"""Benchmark: PPO-EWMA vs PPO on MNIST-v0, PPG-EWMA vs PPO on CoinRun-v0, PPG buffer memory.

Prints one JSON line per result:

- {"bench": "algo_compare", "env", "algo", "objective", "seeds", "interactions": [...],
  "score_mean": [...], "score_min": [...], "score_max": [...], "final_score", "params",
  "train_seconds", "compile_seconds"}: learning curves on the same budget and seeds (score:
  training accuracy on MNIST-v0, mean episode return on CoinRun-v0).
- {"bench": "ppg_aux_memory", "env", "ppg_n_pi", "batch_size", "obs_shape", "obs_dtype",
  "predicted_bytes_per_member", "measured_state_bytes_per_member",
  "measured_argument_delta_per_member"}: the auxiliary buffer's predicted size
  (`scalelab.algos.ppg.aux_buffer_bytes`) against the bytes of the members' buffer arrays and
  against XLA's argument-size difference between the compiled PPG and PPO chunk programs.

and saves the curves as a plot (--plot). Run: `PYTHONPATH=. python benchmarks/algo_compare.py`
(SCALELAB_MNIST pointing at mnist.npz); see --help for sizes.

With `--coinrun-specs SPEC...` the CoinRun comparison runs those sweep specs (files or shipped
specs' names) instead (e.g. the paper's small-scale setup: `--coinrun-specs coinrun_ppg_ewma
coinrun_ppo --sweep-out runs/algo_compare`): each is run (or resumed) into SWEEP_OUT/<spec name>
by the fused sweep runner, and one "algo_compare" line per (spec, model size) is printed with the
seeds' mean/min/max curves ("wall_seconds": the sweep's wall time in this call, compiles
included).
The run directories can then be fitted with `scalelab fit`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from typing import Any

import jax
import numpy as np

import envs_jax
from scalelab import TrainConfig, specs, train
from scalelab.algos import ppg
from scalelab.members import (
    MemberHparams,
    chunk_static,
    init_key,
    init_members,
    make_chunk_fn,
    member_root_keys,
)
from scalelab.sweep.plan import member_network


def curve_line(env: str, cfg: TrainConfig, seeds: int) -> dict[str, Any]:
    """Train `seeds` seeds of cfg together; the learning curve as a JSON-able dict."""
    r = train(cfg, num_seeds=seeds, progress=False)
    score = r.score
    return {
        "bench": "algo_compare", "env": env, "algo": cfg.algo, "objective": cfg.objective,
        "width": cfg.width, "seeds": seeds, "interactions": r.interactions.tolist(),
        "score_mean": np.nanmean(score, 0).tolist(), "score_min": np.nanmin(score, 0).tolist(),
        "score_max": np.nanmax(score, 0).tolist(),
        "final_score": float(np.nanmean(score[:, -max(1, score.shape[1] // 8):])),
        "params": r.params, "train_seconds": round(r.train_seconds, 2),
        "compile_seconds": round(r.compile_seconds, 2),
    }


def sweep_lines(spec_path: str, out_root: str) -> list[dict[str, Any]]:
    """Run (or resume) the sweep `spec_path` (a file or a shipped spec's name) into
    out_root/<name>; one curve line per size."""
    import time
    from collections import defaultdict
    from pathlib import Path

    from scalelab.sweep.run import run_sweep
    from scalelab.sweep.spec import load_spec

    path = specs.resolve(spec_path)
    spec = load_spec(path)
    t0 = time.perf_counter()
    rd = run_sweep(path, Path(out_root) / spec.name, progress=False)
    wall = time.perf_counter() - t0
    members = {m["member"]: m for m in rd.read_manifest()["members"]}
    curves: dict[float, dict[int, list[tuple[int, float]]]] = defaultdict(lambda: defaultdict(list))
    for row in rd.read_metrics():
        m = members[int(row["member"])]
        score = float(row["score"]) if row["valid"] == "1" and row["score"] else math.nan
        curves[m["width"]][m["member"]].append((int(row["interactions"]), score))
    cfg = dict(spec.train)
    lines = []
    for width, per_member in sorted(curves.items()):
        e = np.array([i for i, _ in next(iter(per_member.values()))])
        score = np.array([[s for _, s in pts] for pts in per_member.values()])
        some = next(m for m in members.values() if m["width"] == width)
        lines.append({
            "bench": "algo_compare", "env": spec.env, "source": spec_path,
            "algo": cfg.get("algo", "ppo"), "objective": cfg.get("objective", "clip"),
            "width": width, "seeds": score.shape[0], "interactions": e.tolist(),
            "score_mean": np.nanmean(score, 0).tolist(),
            "score_min": np.nanmin(score, 0).tolist(), "score_max": np.nanmax(score, 0).tolist(),
            "final_score": float(np.nanmean(score[:, -max(1, score.shape[1] // 8):])),
            "params": some["params"], "policy_params": some["policy_params"],
            "wall_seconds": round(wall, 2), "run_dir": str(rd.path),
        })
    return lines


def memory_line(cfg: TrainConfig, members: int) -> dict[str, Any]:
    """Predicted vs measured bytes of PPG's auxiliary buffer per member for cfg."""
    env, env_params = envs_jax.make(cfg.env, **cfg.env_kwargs)
    obs_shape = tuple(env.observation_space(env_params).shape)
    obs, _ = env.reset(jax.random.PRNGKey(0), env_params)
    from scalelab import networks

    arg_bytes = {}
    for algo in ("ppo", "ppg"):
        c = dataclasses.replace(cfg, algo=algo).validate()
        net_cfg = member_network(dataclasses.replace(c, network=c.network or "mlp"))
        static = chunk_static(c, env, net_cfg, c.num_envs, c.updates_per_chunk)
        keys = member_root_keys(list(range(members)))
        params = jax.tree.map(lambda *x: np.stack(x), *[
            networks.init_params(net_cfg, init_key(k), obs_shape, env.num_actions) for k in keys
        ])
        hp = MemberHparams.from_config(c, members)
        state = init_members(static, hp, keys, params, env_params)
        compiled = jax.jit(make_chunk_fn(static.with_updates_per_chunk(1))).lower(
            state, hp, env_params).compile()
        arg_bytes[algo] = compiled.memory_analysis().argument_size_in_bytes
        if algo == "ppg":
            buffer_bytes = sum(x.nbytes for x in jax.tree.leaves(state.aux_buffer)) // members
    return {
        "bench": "ppg_aux_memory", "env": cfg.env, "ppg_n_pi": cfg.ppg_n_pi,
        "batch_size": cfg.batch_size, "obs_shape": list(obs_shape), "obs_dtype": str(obs.dtype),
        "predicted_bytes_per_member": ppg.aux_buffer_bytes(
            cfg.ppg_n_pi, cfg.batch_size, obs_shape, obs.dtype),
        "measured_state_bytes_per_member": int(buffer_bytes),
        "measured_argument_delta_per_member": (arg_bytes["ppg"] - arg_bytes["ppo"]) // members,
    }


def plot(lines: list[dict[str, Any]], path: str) -> None:
    """Mean curves with min-max bands over seeds, one panel per environment."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    envs = sorted({ln["env"] for ln in lines})
    fig, axes = plt.subplots(1, len(envs), figsize=(5 * len(envs), 3.6), squeeze=False)
    for ax, env in zip(axes[0], envs, strict=True):
        for ln in (x for x in lines if x["env"] == env):
            e = np.asarray(ln["interactions"])
            label = f"{ln['algo']} ({ln['objective']})" + (
                f" w={ln['width']:.3g}" if "source" in ln else "")
            ax.plot(e, ln["score_mean"], label=label)
            ax.fill_between(e, ln["score_min"], ln["score_max"], alpha=0.2)
        ax.set_xlabel("interactions per member")
        ax.set_ylabel("training accuracy" if env == "MNIST-v0" else "episode return")
        ax.set_title(f"{env}, {lines[0]['seeds']} seeds")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _emit(line: dict[str, Any]) -> dict[str, Any]:
    print(json.dumps(line), flush=True)
    return line


def mnist_lines(args: argparse.Namespace, decay: float) -> list[dict[str, Any]]:
    """PPO and PPO-EWMA on MNIST-v0 at args' width and budget."""
    mnist = dict(width=args.mnist_width, num_envs=args.mnist_envs,
                 rollout_length=args.mnist_rollout, total_interactions=args.mnist_interactions,
                 update_epochs=2, num_minibatches=4, updates_per_chunk=4)
    return [_emit(curve_line("MNIST-v0", TrainConfig.preset(
        "MNIST-v0", algo=algo, ewma_decay=decay, **mnist), args.seeds))
        for algo in ("ppo", "ppo_ewma")]


def coinrun_spec_lines(specs: list[str], out_root: str) -> list[dict[str, Any]]:
    """One curve line per (spec, model size) of the CoinRun sweep specs."""
    return [_emit(line) for path in specs for line in sweep_lines(path, out_root)]


def coinrun_lines(args: argparse.Namespace, decay: float) -> list[dict[str, Any]]:
    """PPO and PPG-EWMA on CoinRun-v0 (easy) at args' width and budget."""
    coin = dict(env_kwargs={"distribution_mode": "easy"}, network="impala",
                width=args.coinrun_width, num_envs=args.coinrun_envs,
                rollout_length=args.coinrun_rollout,
                total_interactions=args.coinrun_interactions, gamma=0.999, gae_lambda=0.95,
                lr=2e-3, num_minibatches=8, updates_per_chunk=8)
    # CPU scale: the settings under which tests/test_game_learning.py's PPO learns CoinRun
    # (1 epoch). PPG-EWMA: 1 policy + 1 value epoch per iteration and, to fit a 2-core CPU,
    # an auxiliary phase every 8 iterations of 2 epochs (PPG's defaults: 32 and 6).
    runs = [dict(algo="ppo", update_epochs=1),
            dict(algo="ppg_ewma", objective="kl", update_epochs=1, value_epochs=1,
                 ppg_n_pi=8, aux_epochs=2, ewma_decay=decay)]
    return [_emit(curve_line("CoinRun-v0", TrainConfig(env="CoinRun-v0", **coin, **extra),
                             args.seeds)) for extra in runs]


def main() -> None:
    """Parse sizes, run the comparisons and the memory check, print JSON lines, save the plot."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--mnist-width", type=float, default=0.125)
    ap.add_argument("--mnist-interactions", type=int, default=65_536)
    ap.add_argument("--mnist-envs", type=int, default=16)
    ap.add_argument("--mnist-rollout", type=int, default=64)
    ap.add_argument("--only", choices=["mnist", "coinrun"], default=None)
    ap.add_argument("--coinrun-width", type=float, default=1 / 16)
    ap.add_argument("--coinrun-interactions", type=int, default=98_304)
    ap.add_argument("--coinrun-envs", type=int, default=32)
    ap.add_argument("--coinrun-rollout", type=int, default=64)
    ap.add_argument("--coinrun-specs", nargs="+", default=None, metavar="SPEC",
                    help="run the CoinRun comparison from these sweep specs instead")
    ap.add_argument("--sweep-out", default="runs/algo_compare",
                    help="with --coinrun-specs: parent folder of their run directories")
    ap.add_argument("--plot", default="algo_compare.png")
    args = ap.parse_args()

    # EWMA centre of mass = policy steps per iteration: 8 in both setups (MNIST 2 epochs x 4
    # minibatches, CoinRun 1 epoch x 8)
    decay = 8 / 9
    lines = []
    if args.only != "coinrun":
        lines += mnist_lines(args, decay)
    if args.only != "mnist":
        lines += (coinrun_spec_lines(args.coinrun_specs, args.sweep_out) if args.coinrun_specs
                  else coinrun_lines(args, decay))
    plot(lines, args.plot)

    if args.only != "coinrun":
        mem_cfg = TrainConfig.preset("MNIST-v0", algo="ppg", width=0.125, num_envs=16,
                                     rollout_length=64, ppg_n_pi=8)
        print(json.dumps(memory_line(mem_cfg, members=2)), flush=True)
    paper = ppg.aux_buffer_bytes(32, 64 * 256, (64, 64, 3), np.uint8)
    print(json.dumps({"bench": "ppg_aux_memory", "env": "Procgen (PPG defaults)",
                      "ppg_n_pi": 32, "batch_size": 64 * 256, "obs_shape": [64, 64, 3],
                      "obs_dtype": "uint8", "predicted_bytes_per_member": paper,
                      "predicted_gib": round(paper / 2**30, 2),
                      "log2_bytes": round(math.log2(paper), 2)}))


if __name__ == "__main__":
    main()
