"""The one training loop: teacher CTC training, distillation and post-pruning fine-tuning use it.

A caller gives a model, a `loss_fn(model, batch_indices, step) -> (loss, logs)`, a sampler and a
way to save a checkpoint; the loop does AdamW + warmup/cosine, clipping, progress, periodic dev
scoring, checkpoints, and exact resume after a kill: model, optimizer, schedule, sampler
position and RNG states are saved together every `ckpt_every` steps, so a restarted run continues
the same sequence. They are ONE file, `train_state.pt` (read with `torch.load(weights_only=True)`,
so it runs no code), committed by one atomic rename: a kill at any moment leaves the previous
step's complete state or the new one, never weights of one step with the optimizer of another.
`last.safetensors` (the self-describing checkpoint users load) is written after it and is only a
copy. Folders from older versions (`train_state.pt` without weights + `last.safetensors`) still
resume: the weights then come from `last.safetensors`.
Under `torchrun` it wraps the model in DDP (gloo on CPU) and only rank 0 writes.
"""

from __future__ import annotations

import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from edgekd.atomic import atomic_path, fault_point

STATE_FILE = "train_state.pt"


@dataclass(frozen=True)
class LoopOptions:
    max_steps: int = 1000  # optimizer steps in total (resume continues up to it)
    lr: float = 1e-3  # peak learning rate
    warmup_steps: int = 300  # linear warm-up, then cosine decay to min_lr_ratio * lr
    min_lr_ratio: float = 0.05
    weight_decay: float = 1e-3
    grad_clip: float = 5.0  # max global grad norm
    ckpt_every: int = 200  # steps between resumable checkpoints
    eval_every: int = 500  # steps between dev evaluations (0 = only at the end)
    log_every: int = 10  # steps between progress/history entries
    seed: int = 0
    threads: int = 0  # torch intra-op threads (0 = leave as is)
    time_budget_s: float = 0.0  # stop (with a checkpoint) after this much wall time; 0 = no limit
    progress: bool = True
    # "bf16": forward under torch.autocast (AVX-512 BF16 CPUs and GPUs); weights, optimizer and the
    # loss stay fp32. Measured 1.5-1.8x the fp32 step rate on this box's CPU (benchmarks/bench_train.py).
    precision: str = "fp32"
    device: str = "cpu"  # "cpu" or "cuda"; the loss_fn moves its batch to `device`

    def __post_init__(self):
        if self.max_steps < 1 or self.lr <= 0:
            raise ValueError("max_steps must be >= 1 and lr > 0")
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be fp32 or bf16, got {self.precision!r}")
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"device must be cpu or cuda, got {self.device!r}")
        if self.warmup_steps < 0 or not 0 <= self.min_lr_ratio <= 1:
            raise ValueError("warmup_steps must be >= 0 and min_lr_ratio in [0, 1]")


def lr_at(step: int, o: LoopOptions) -> float:
    if step < o.warmup_steps:
        return o.lr * (step + 1) / o.warmup_steps
    p = min(1.0, (step - o.warmup_steps) / max(1, o.max_steps - o.warmup_steps))
    return o.lr * (o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * p)))


def dist_info() -> tuple[int, int]:
    """(rank, world size); initialises the gloo process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("gloo")
    if world > 1:
        return torch.distributed.get_rank(), world
    return 0, 1


def autocast(opts: LoopOptions):
    """The forward-pass precision context for `opts` (a no-op for fp32)."""
    import contextlib

    if opts.precision == "bf16":
        return torch.autocast(opts.device, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train_loop(model: torch.nn.Module, loss_fn: Callable, sampler, opts: LoopOptions, out_dir: str | Path,
               save_fn: Callable[[torch.nn.Module, Path, dict], None],
               eval_fn: Callable[[torch.nn.Module], dict] | None = None,
               seconds_fn: Callable[[list[int]], float] | None = None) -> dict[str, Any]:
    """Train until `opts.max_steps` (or the time budget). Returns {"step", "history", "best"}.

    `save_fn(model, path, info)` writes a self-describing checkpoint; `eval_fn(model)` returns
    metrics with a "wer" key (lower is better) used to keep `best.safetensors`.
    """
    from tqdm import tqdm

    out_dir = Path(out_dir)
    rank, world = dist_info()
    if opts.threads:
        torch.set_num_threads(opts.threads)
    torch.manual_seed(opts.seed)
    random.seed(opts.seed)
    np.random.seed(opts.seed)
    gen = torch.Generator().manual_seed(opts.seed + rank)
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    optim = torch.optim.AdamW([{"params": decay, "weight_decay": opts.weight_decay},
                               {"params": no_decay, "weight_decay": 0.0}], lr=opts.lr, betas=(0.9, 0.98))
    step, history, best, prior_s = 0, [], {"wer": float("inf"), "step": -1}, 0.0
    resumed_acc: tuple[dict, int] = ({}, 0)
    state_path = out_dir / STATE_FILE
    if rank == 0 and out_dir.is_dir():
        from edgekd.atomic import sweep_stale

        sweep_stale(out_dir)  # a run killed mid-write left its temp checkpoint behind
    if state_path.exists():  # resume: everything that decides the next step comes back
        from safetensors.torch import load_file

        try:
            st = torch.load(state_path, weights_only=True)
        except Exception as e:  # only a file damaged outside edgekd can get here: writes are atomic
            from edgekd.errors import EdgekdError

            raise EdgekdError(f"{state_path}: cannot resume from it ({str(e).strip().splitlines()[-1][:160] if str(e).strip() else type(e).__name__}); "
                              f"delete it to start over") from None
        if "model" in st:  # one-file state: weights of exactly this step
            model.load_state_dict(st["model"])
        else:  # older format: weights in last.safetensors beside it
            model.load_state_dict(load_file(str(out_dir / "last.safetensors")), strict=False)
        optim.load_state_dict(st["optim"])
        sampler.load_state(st["sampler"])
        torch.set_rng_state(st["torch_rng"])
        gen.set_state(st["gen_rng"])
        step, history, best = st["step"], st["history"], st["best"]
        prior_s = float(st.get("train_s", 0.0))  # wall time of earlier legs: a resumed run reports the total
        resumed_acc = (dict(st.get("logs_acc", {})), int(st.get("n_acc", 0)))
    out_dir.mkdir(parents=True, exist_ok=True)

    def checkpoint():
        if rank != 0:
            return
        state = {"model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
                 "optim": optim.state_dict(), "sampler": sampler.state(), "torch_rng": torch.get_rng_state(),
                 "gen_rng": gen.get_state(), "step": step, "history": history, "best": best,
                 "train_s": prior_s + time.time() - t0,
                 # the partial means of the next history entry: without them a resumed run logs
                 # the mean of fewer steps than an uninterrupted one
                 "logs_acc": dict(logs_acc), "n_acc": n_acc}
        with atomic_path(state_path) as tmp:  # the resume point: everything in one rename
            torch.save(state, tmp)
        fault_point("train-between-checkpoint-files")
        save_fn(model, out_dir / "last.safetensors", {"step": step, "best": best})

    def evaluate():
        nonlocal best
        if eval_fn is None or rank != 0:
            return
        model.eval()
        with torch.no_grad(), autocast(opts):
            m = eval_fn(model)
        model.train()
        history.append({"step": step, **{f"dev_{k}": v for k, v in m.items()}})
        if opts.progress:
            tqdm.write(f"step {step}: " + ", ".join(f"dev {k} {v:.4g}" for k, v in m.items()))
        if m.get("wer", float("inf")) <= best["wer"]:
            best = {"wer": m["wer"], "step": step, **m}
            save_fn(model, out_dir / "best.safetensors", {"step": step, "best": best})

    model.train()
    t0 = time.time()
    audio_s, (logs_acc, n_acc) = 0.0, resumed_acc
    bar = tqdm(total=opts.max_steps, initial=step, desc="train", disable=not opts.progress or rank != 0)
    it = iter(sampler)
    while step < opts.max_steps:
        epoch, _, idx = next(it)
        for g in optim.param_groups:
            g["lr"] = lr_at(step, opts)
        with autocast(opts):
            loss, logs = loss_fn(net, idx, step, gen)
        loss = loss.float()
        optim.zero_grad(set_to_none=True)
        if torch.isfinite(loss) and loss.requires_grad:  # a batch with nothing to learn is skipped
            loss.backward()
            gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), opts.grad_clip)
            if torch.isfinite(gnorm):
                optim.step()
        step += 1
        audio_s += seconds_fn(idx) if seconds_fn else 0.0
        for k, v in {"loss": float(loss.detach()), **logs}.items():
            logs_acc[k] = logs_acc.get(k, 0.0) + float(v)
        n_acc += 1
        if step % opts.log_every == 0 or step == opts.max_steps:
            el = time.time() - t0
            entry = {"step": step, "epoch": epoch, "lr": lr_at(step - 1, opts),
                     **{k: v / n_acc for k, v in logs_acc.items()}, "audio_s_per_s": audio_s * world / max(el, 1e-9),
                     "train_s": round(prior_s + el, 1)}
            history.append(entry)
            bar.set_postfix(loss=f"{entry['loss']:.3f}", x_rt=f"{entry['audio_s_per_s']:.1f}")
            logs_acc, n_acc = {}, 0
        bar.update(1)
        if opts.eval_every and step % opts.eval_every == 0:
            evaluate()
        if step % opts.ckpt_every == 0:
            checkpoint()
        if opts.time_budget_s and time.time() - t0 > opts.time_budget_s:
            break
    bar.close()
    if not any(h.get("step") == step and "dev_wer" in h for h in history):
        evaluate()
    checkpoint()
    if world > 1:
        torch.distributed.barrier()
    return {"step": step, "history": history, "best": best, "train_s": round(prior_s + time.time() - t0, 1)}
