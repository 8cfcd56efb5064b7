"""`edgekd distil`: a small conformer learns a teacher's soft targets (and/or its 1-best / human labels).

Losses (weights in `DistilOptions`):
- `kd`: frame-level KL at temperature T × T² against the soft targets (rebuilt from top-k,
  aligned to the student's frame rate);
- `ctc`: CTC on hard labels — human labels from the review import where given, else the
  teacher's 1-best (sequence-level KD);
- `annealing`: Annealing-KD — phase 1 regresses student logits on teacher logits × T/τmax with
  T stepping 1→τmax; phase 2 trains on hard labels (CTC) only.
The student adopts the teacher's token set (`tokens="teacher"`: characters or subwords, with the
sentencepiece model the soft targets carry), which frame-level KD needs; another set (a
sentencepiece .model or tokens.txt) is allowed for sequence-level KD (`loss="ctc"`) only.
`terms` (`edgekd.kd_terms.KDTerms`) adds feature KD, relation KD, mutual learning and
self-distillation on top of these; None (the default) trains exactly as before.
`streaming` (ChunkTraining) trains a streaming student with dynamic chunks on NEMO_FEATURES (the
fbank sherpa-onnx computes online for it), optionally from an offline `init`. The
training machinery (resume, progress, checkpoints, dev WER, DDP) is `edgekd.train.loop`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from edgekd.audio import NEMO_FEATURES, FeaturizerConfig
from edgekd.config import to_dict
from edgekd.errors import EdgekdError
from edgekd.kd_losses import align_frames, annealing_mse, annealing_temperature, kd_loss
from edgekd.kd_terms import KDTerms
from edgekd.manifest import Utterance, read_manifest
from edgekd.models import load_preset
from edgekd.models.conformer import ConformerCTC
from edgekd.records import read_pseudolabels
from edgekd.softtargets import SoftTargets
from edgekd.tokens import Tokenizer, load_token_set
from edgekd.train import dev_eval_fn, finish_run, load_features, save_fn_for
from edgekd.train.chunks import ChunkTraining, delay_targets, to_streaming
from edgekd.train.data import BucketBatchSampler, collate, seconds, spec_augment
from edgekd.train.loop import LoopOptions, dist_info, train_loop

LOSSES = ("kd", "ctc", "kd+ctc", "annealing")


@dataclass(frozen=True)
class DistilOptions:
    preset: str = "student-xs"  # student preset
    loss: str = "kd+ctc"  # one of LOSSES
    temperature: float = 2.0  # KD temperature T
    kd_weight: float = 1.0  # weight of the frame-level KD term
    ctc_weight: float = 0.3  # weight of the hard-label CTC term
    tau_max: int = 7  # Annealing-KD: largest temperature (Jafari et al.: 7 on GLUE)
    phase1_fraction: float = 0.6  # Annealing-KD: share of steps in phase 1
    include_review: bool = True  # also learn the soft targets of utterances routed to review
    init: str = ""  # start from this checkpoint (e.g. a pruned student) instead of a fresh preset
    loop: LoopOptions = field(default_factory=lambda: LoopOptions(max_steps=2000, lr=2e-3, warmup_steps=200))
    max_frames: int = 12000  # padded feature frames per batch
    spec_augment: bool = True
    max_dev_utts: int = 300
    streaming: Optional[ChunkTraining] = None  # train a streaming student (dynamic chunks); None = offline
    tokens: str = "teacher"  # the student's token set: the teacher's, or a .model / tokens.txt (loss=ctc only)
    terms: Optional[KDTerms] = None  # feature/relation KD, mutual learning, self-distillation; None = none

    def __post_init__(self):
        self._verify()

    def _verify(self):
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if self.temperature <= 0 or self.tau_max < 1:
            raise ValueError("temperature must be > 0 and tau_max >= 1")
        if self.loss == "kd+ctc" and self.kd_weight <= 0 and self.ctc_weight <= 0:
            raise ValueError("loss=kd+ctc needs kd_weight or ctc_weight > 0")
        if not 0 < self.phase1_fraction < 1:
            raise ValueError("phase1_fraction must be in (0, 1)")
        if self.tokens != "teacher" and self.loss != "ctc":
            raise ValueError(f"tokens={self.tokens!r} needs loss='ctc': frame-level KD (loss={self.loss!r}) "
                             "needs the teacher's token set (tokens='teacher')")
        if self.terms is not None and self.terms.active and self.loss == "annealing":
            raise ValueError("terms (feature/relation/mutual/self KD) add to kd, ctc or kd+ctc, not to loss=annealing")


def config_dict(opts: DistilOptions) -> dict:
    """The options as recorded (checkpoint, manifest, pipeline fingerprint): without `terms` when
    it is None, so runs without the new terms keep the config they had before it existed."""
    d = to_dict(opts)
    if d.get("terms") is None:
        d.pop("terms", None)
    return d


def _training_set(st: SoftTargets, labels: Path, human: Optional[Path], include_review: bool) -> list[Utterance]:
    """Utterances with soft targets; text = human label if any, else teacher 1-best (distil route)."""
    human_text = {u.id: u.text for u in read_manifest(human)} if human else {}
    utts = []
    for p in read_pseudolabels(labels, frame_rate=st.frame_rate):  # each checked: frames ~ duration x rate
        if p.id not in st or p.route == "dropped":  # the WER filter: a reference says the label is wrong
            continue
        text = human_text.get(p.id) or (p.text if p.route == "distil" else None)
        if text is None and not include_review:
            continue
        utts.append(Utterance(id=p.id, audio=p.audio, duration=p.duration, text=text))
    return utts


def run_distil(opts: DistilOptions, soft_targets: str | Path, out_dir: str | Path, *,
               human_labels: str | Path | None = None, dev_manifest: str | Path | None = None,
               featurizer: FeaturizerConfig = FeaturizerConfig()) -> Path:
    """Train a student from `soft_targets` (a pseudolabel output folder); returns the manifest path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rank, world = dist_info()
    st = SoftTargets(soft_targets)
    tokenizer = Tokenizer(*load_token_set(opts.tokens)) if opts.tokens != "teacher" else st.tokenizer
    if opts.streaming and featurizer != NEMO_FEATURES:
        if featurizer != FeaturizerConfig():
            raise EdgekdError("a streaming student is trained on NEMO_FEATURES (what sherpa-onnx computes for it); "
                              f"got a custom featurizer {featurizer.to_dict()}")
        featurizer = NEMO_FEATURES
    init = None
    if opts.init:
        from edgekd.models import load_checkpoint

        # an offline student (kaldi fbank) may start a streaming one: its input statistics are
        # re-estimated on the new features below, the rest is fine-tuned
        init = load_checkpoint(opts.init, featurizer=None if opts.streaming else featurizer, tokens=tokenizer.tokens)
    dims = init.dims if init else load_preset(opts.preset, vocab_size=len(tokenizer), n_mels=featurizer.n_mels)
    if opts.streaming:
        dims = opts.streaming.streaming_dims(dims)
    utts = _training_set(st, Path(soft_targets) / "labels.jsonl", Path(human_labels) if human_labels else None,
                         opts.include_review)
    if opts.loss == "ctc":  # hard labels only: utterances without text teach nothing
        utts = [u for u in utts if u.text]
    if not utts:
        raise EdgekdError(f"{soft_targets}: no utterances with soft targets to distil from")
    train, dev, q = load_features(out, "distil", utts, dev_manifest, featurizer, out.parent / ".feature_cache",
                                  progress=rank == 0 and opts.loop.progress)
    student_rate = featurizer.frame_rate / dims.subsampling
    torch.manual_seed(opts.loop.seed)
    if init is not None and init.featurizer == featurizer:
        model = (to_streaming(init.model, opts.streaming) if opts.streaming else init.model).train()  # own stats
    else:
        model = to_streaming(init.model, opts.streaming) if init is not None else ConformerCTC(dims)
        model.set_input_stats(*train.stats())
        model.train()
    texts = {u.id: u.text for u in utts}
    targets = [tokenizer.encode(texts.get(i) or "") for i in train.ids]
    has_text = np.array([bool(texts.get(i)) for i in train.ids])
    phase1 = int(opts.loop.max_steps * opts.phase1_fraction)

    def teacher_batch(idx, n_frames: torch.Tensor, t_max: int) -> torch.Tensor:
        rows = [align_frames(torch.from_numpy(st.get(train.ids[i])), int(n), st.frame_rate, student_rate)
                for i, n in zip(idx, n_frames)]
        out_t = torch.full((len(idx), t_max, len(st.tokens)), -float(np.log(len(st.tokens))))
        for j, r in enumerate(rows):
            out_t[j, : r.shape[0]] = r
        return delay_targets(out_t, opts.streaming.target_delay) if opts.streaming else out_t

    def base_terms(idx, step, logits, olens) -> tuple[torch.Tensor, dict]:
        """The soft-target (or Annealing-KD) and CTC terms of one student's logits on batch `idx`."""
        logs: dict[str, float] = {}
        total = logits.new_zeros(())
        anneal_t = annealing_temperature(step, phase1, opts.tau_max) if opts.loss == "annealing" else None
        use_kd = opts.loss in ("kd", "kd+ctc") and opts.kd_weight > 0
        if use_kd or anneal_t is not None:
            tl = teacher_batch(idx, olens, logits.shape[1])
            if anneal_t is not None:
                total = total + annealing_mse(logits, tl, olens, anneal_t, opts.tau_max)
                logs["anneal_T"] = anneal_t
            else:
                kd = kd_loss(logits, tl, olens, opts.temperature)
                total = total + opts.kd_weight * kd
                logs["kd"] = float(kd.detach())
        use_ctc = opts.loss == "ctc" or (opts.loss == "kd+ctc" and opts.ctc_weight > 0) or \
            (opts.loss == "annealing" and anneal_t is None)
        sel = [j for j, i in enumerate(idx) if has_text[i]]
        if use_ctc and sel:
            tg = torch.tensor([t for j in sel for t in targets[idx[j]]], dtype=torch.int64)
            tlen = torch.tensor([len(targets[idx[j]]) for j in sel], dtype=torch.int64)
            lp = logits[sel].log_softmax(-1).transpose(0, 1)
            c = torch.nn.functional.ctc_loss(lp, tg, olens[sel], tlen, blank=0, reduction="mean", zero_infinity=True)
            total = total + (opts.ctc_weight if opts.loss == "kd+ctc" else 1.0) * c
            logs["ctc"] = float(c.detach())
        return total, logs

    extra, trained = None, model
    if opts.terms is not None and opts.terms.active:
        from edgekd.kd_terms import build_terms

        trained, extra = build_terms(opts.terms, model, featurizer, student_rate, st.meta.get("teachers") or [],
                                     opts.temperature, opts.loop.seed, world, warm_start=init is not None)

    def loss_fn(net, idx, step, gen):
        x, lens = collate(train, idx)
        xa = spec_augment(x, lens, gen) if opts.spec_augment else x
        chunk = opts.streaming.sample(gen) if opts.streaming else None
        if extra is not None:
            return extra(net, [train.ids[i] for i in idx], x, xa, lens, chunk,
                         lambda logits, olens: base_terms(idx, step, logits, olens))
        logits, olens = net(xa, lens, chunk)
        return base_terms(idx, step, logits, olens)

    sampler = BucketBatchSampler(train.lengths, opts.max_frames, seed=opts.loop.seed, rank=rank, world=world)
    cfg = {**config_dict(opts), "soft_targets": str(soft_targets), "teachers": st.meta.get("teachers")}
    save_student = save_fn_for(featurizer, tokenizer, init.preset if init else opts.preset, "student", cfg,
                               init.extra if init else None)

    def save(m, path: Path, info: dict) -> None:  # the wrapper of the extra terms saves its student
        save_student(m.student if m is not model else m, path, info)
    t0 = time.time()
    dev_eval = dev_eval_fn(dev, tokenizer, opts.max_dev_utts)
    if opts.streaming and dev_eval is not None:  # score the streaming student as it will stream
        plain, eval_chunk = dev_eval, opts.streaming.eval_chunk

        def dev_eval(m):
            return plain(lambda x, lens: m(x, lens, eval_chunk))
    if dev_eval is not None and trained is not model:
        student_eval = dev_eval

        def dev_eval(m):
            return student_eval(m.student)
    res = train_loop(trained, loss_fn, sampler, opts.loop, out, save, dev_eval,
                     lambda idx: seconds(train, idx, featurizer.frame_rate))
    if rank != 0:
        return out / "manifest.json"
    if getattr(trained, "peer", None) is not None:  # mutual learning's second student, usable on its own
        save_student(trained.peer, out / "peer.safetensors", {"step": res["step"], "role": "peer"})
    return finish_run(out, "distil", cfg, res,
                      {"params": model.num_params(), "utterances": len(train), "with_text": int(has_text.sum()),
                       "rejected": q.count},
                      [Path(soft_targets) / "meta.json", *([human_labels] if human_labels else [])], t0)
