"""`edgekd train`: CTC training of a conformer preset on labeled manifests (the teacher recipe).

Writes to `out_dir`: `last.safetensors` + `train_state.pt` (resumable), `best.safetensors`
(lowest dev WER), `model.safetensors` (final pick: best), `history.jsonl`, `manifest.json`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from edgekd.audio import FeaturizerConfig, Quarantine
from edgekd.config import to_dict
from edgekd.decode import greedy, wer_cer
from edgekd.errors import EdgekdError
from edgekd.manifest import StageManifest, read_manifest
from edgekd.models import Checkpoint, load_preset
from edgekd.models.conformer import ConformerCTC
from edgekd.tokens import Tokenizer, load_token_set
from edgekd.train.data import (BucketBatchSampler, FeatureSet, cache_features, collate, seconds,
                               spec_augment)
from edgekd.train.loop import LoopOptions, dist_info, train_loop


@dataclass(frozen=True)
class TrainOptions:
    preset: str = "teacher-m"  # model preset name or YAML path
    role: str = "teacher"  # recorded in the checkpoint
    loop: LoopOptions = LoopOptions()
    max_frames: int = 24000  # padded feature frames per batch (~4 min of audio)
    spec_augment: bool = True
    max_dev_utts: int = 300  # dev WER on at most this many utterances (speed)
    cache_dir: str = ""  # feature cache; default: <out_dir>/../.feature_cache
    init: str = ""  # warm start: weights (and input stats) from this checkpoint; its dims must fit the preset
    init_new_head: bool = False  # warm start with another token set: every weight but the output layer (new)
    tokens: str = ""  # token set: "" = the 29 characters, a sentencepiece .model or a tokens.txt (`edgekd tokens train`)

    def __post_init__(self):
        if self.max_frames < 1000:
            raise ValueError(f"max_frames ({self.max_frames}) must be >= 1000")


def save_fn_for(featurizer: FeaturizerConfig, tokenizer: Tokenizer, preset: str, role: str, train_cfg: dict,
                extra: dict | None = None):
    def save(model, path: Path, info: dict) -> None:
        Checkpoint(model=model, featurizer=featurizer, tokens=tokenizer.tokens, preset=preset, role=role,
                   train={"config": train_cfg, **info}, extra=dict(extra or {}),
                   sentencepiece=tokenizer.spm).save(path)
    return save


def dev_eval_fn(dev: FeatureSet | None, tokenizer: Tokenizer, max_utts: int, batch: int = 16, device: str = "cpu"):
    """A closure scoring greedy WER/CER on the first `max_utts` dev utterances."""
    if dev is None or len(dev) == 0:
        return None
    n = min(len(dev), max_utts)
    order = sorted(range(n), key=lambda i: int(dev.lengths[i]))

    def run(model) -> dict:
        hyps, refs = [], []
        for s in range(0, n, batch):
            idx = order[s : s + batch]
            x, lens = collate(dev, idx)
            logits, olens = model(x.to(device), lens.to(device))
            hyps += greedy(logits.float().cpu(), olens.cpu(), tokenizer)
            refs += [dev.texts[i] or "" for i in idx]
        return wer_cer(refs, hyps)
    return run


def ctc_loss(model, x, lens, targets, target_lens):
    logits, olens = model(x, lens)
    lp = logits.float().log_softmax(-1).transpose(0, 1)  # (T', B, V) as ctc_loss wants; fp32 under autocast
    return F.ctc_loss(lp, targets, olens, target_lens, blank=0, reduction="mean", zero_infinity=True)


def load_features(out_dir: Path, stage: str, utts, dev_manifest, featurizer: FeaturizerConfig, cache: Path,
                  progress: bool) -> tuple[FeatureSet, FeatureSet | None, Quarantine]:
    """Cached features of `utts` and of the dev manifest's labeled utterances (train and distil
    share this); unreadable audio goes to `out_dir/rejected.jsonl` under `stage`, not fatal."""
    q = Quarantine(out_dir / "rejected.jsonl", stage=stage)
    train = cache_features(utts, featurizer, cache, q, progress=progress)
    dev = cache_features([u for u in read_manifest(dev_manifest) if u.text], featurizer, cache, q,
                         progress=False) if dev_manifest else None
    return train, dev, q


def finish_run(out_dir: Path, stage: str, cfg: dict, res: dict, metrics: dict, inputs: list, t0: float) -> Path:
    """After `train_loop`: model.safetensors = the best checkpoint (else the last), history.jsonl,
    and the stage manifest (steps, best, then `metrics`); returns the manifest path."""
    best = out_dir / ("best.safetensors" if (out_dir / "best.safetensors").exists() else "last.safetensors")
    (out_dir / "model.safetensors").write_bytes(best.read_bytes())
    (out_dir / "history.jsonl").write_text("".join(json.dumps(h) + "\n" for h in res["history"]))
    m = StageManifest(stage=stage, config=cfg, outputs={"model": "model.safetensors", "history": "history.jsonl"},
                      metrics={"steps": res["step"], "best": res["best"], **metrics},
                      timings={"wall_s": round(time.time() - t0, 1), "train_s": res["train_s"]})
    m.add_inputs(*inputs)
    return m.save(out_dir)


def run_train(opts: TrainOptions, train_manifest: str | Path, dev_manifest: str | Path | None,
              out_dir: str | Path, featurizer: FeaturizerConfig = FeaturizerConfig()) -> Path:
    """Train a CTC model; returns the path of `out_dir/manifest.json`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rank, world = dist_info()
    tokenizer = Tokenizer(*load_token_set(opts.tokens))
    cache = Path(opts.cache_dir) if opts.cache_dir else out_dir.parent / ".feature_cache"
    train_utts = [u for u in read_manifest(train_manifest) if u.text]
    if not train_utts:
        raise EdgekdError(f"{train_manifest}: no labeled utterances to train on")
    train, dev, q = load_features(out_dir, "train", train_utts, dev_manifest, featurizer, cache,
                                  progress=rank == 0 and opts.loop.progress)
    dims = load_preset(opts.preset, vocab_size=len(tokenizer), n_mels=featurizer.n_mels)
    torch.manual_seed(opts.loop.seed)
    model = ConformerCTC(dims)
    model.set_input_stats(*train.stats())
    if opts.init:
        from edgekd.models import load_checkpoint

        import dataclasses

        init = load_checkpoint(opts.init, featurizer=featurizer,
                               tokens=None if opts.init_new_head else tokenizer.tokens)
        # without init_new_head the token sets already matched, vocabulary size included
        if dataclasses.replace(init.dims, vocab_size=dims.vocab_size) != dims:
            raise EdgekdError(f"--init {opts.init}: its dims differ from preset {opts.preset}")
        state = init.model.state_dict()
        if opts.init_new_head:  # the encoder carries over; the output layer starts fresh for the new tokens
            state = {k: v for k, v in state.items() if not k.startswith("head.")} | {
                k: v for k, v in model.state_dict().items() if k.startswith("head.")}
        model.load_state_dict(state)
    dev_ = opts.loop.device
    model.to(dev_)
    targets = [tokenizer.encode(t or "") for t in train.texts]
    sampler = BucketBatchSampler(train.lengths, opts.max_frames, seed=opts.loop.seed, rank=rank, world=world)

    def loss_fn(net, idx, step, gen):
        x, lens = collate(train, idx)
        if opts.spec_augment:
            x = spec_augment(x, lens, gen)
        tg = torch.tensor([i for j in idx for i in targets[j]], dtype=torch.int64)
        tl = torch.tensor([len(targets[j]) for j in idx], dtype=torch.int64)
        return ctc_loss(net, x.to(dev_), lens.to(dev_), tg.to(dev_), tl.to(dev_)), {}

    cfg = to_dict(opts)
    save = save_fn_for(featurizer, tokenizer, opts.preset, opts.role, cfg)
    t0 = time.time()
    res = train_loop(model, loss_fn, sampler, opts.loop, out_dir, save,
                     dev_eval_fn(dev, tokenizer, opts.max_dev_utts, device=dev_),
                     lambda idx: seconds(train, idx, featurizer.frame_rate))
    if rank != 0:
        return out_dir / "manifest.json"
    thr = [h["audio_s_per_s"] for h in res["history"] if "audio_s_per_s" in h]
    return finish_run(out_dir, "train", cfg, res,
                      {"params": model.num_params(), "train_utterances": len(train),
                       "train_hours": round(float(train.lengths.sum()) / featurizer.frame_rate / 3600, 3),
                       "audio_s_per_s": round(thr[-1], 1) if thr else None, "rejected": q.count},
                      [train_manifest, *([dev_manifest] if dev_manifest else [])], t0)
