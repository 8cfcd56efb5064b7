"""The shard worker: one object that labels a shard, handed to whichever engine runs the shards.

A `ShardLabeler` holds the loaded ensemble, the options and (for beam search) its decoder, so
a worker process loads teachers and LM once and no module keeps them in globals. It pickles as
its recipe (teacher specs, weights, options): a process that receives it loads the teachers
itself, which is what the process pool and the Ray actors need.
"""

from __future__ import annotations

import time
from pathlib import Path

from edgekd.atomic import fault_point
from edgekd.manifest import write_jsonl
from edgekd.pseudolabel.ensemble import Ensemble, confidence
from edgekd.pseudolabel.options import PseudoLabelOptions
from edgekd.records import PseudoLabel
from edgekd.softtargets import encode_topk, shard_format_for, write_shard

# One shard's work: (shard index, [{id, audio, duration}], output folder); plain data, cheap to send.
Job = tuple[int, list[dict], str]


class ShardLabeler:
    def __init__(self, ensemble: Ensemble, specs: list[str], weights: list[float], opts: PseudoLabelOptions):
        self.ensemble, self.opts = ensemble, opts
        self.specs, self.weights = list(specs), list(weights)  # the recipe this object pickles as
        self._decoder = None

    @classmethod
    def load(cls, specs: list[str], weights: list[float], opts: PseudoLabelOptions) -> ShardLabeler:
        return cls(Ensemble(list(specs), list(weights), opts.teacher_runtime, opts.teacher_weighting), specs, weights, opts)

    def __reduce__(self):
        return ShardLabeler.load, (self.specs, self.weights, self.opts)

    def _decode(self, lp, lens) -> list[str]:
        if not self.opts.beam:
            from edgekd.decode import greedy
            from edgekd.tokens import Tokenizer

            return greedy(lp, lens, Tokenizer(self.ensemble.tokens))
        if self._decoder is None:  # built on first use: loading the LM takes a moment
            from edgekd.decode import BeamDecoder

            o = self.opts
            self._decoder = BeamDecoder(self.ensemble.tokens, lm_path=o.lm or None, beam_width=o.beam,
                                        alpha=o.lm_alpha, beta=o.lm_beta)
        return self._decoder(lp, lens)

    def label(self, job: Job) -> dict:
        """Decode one shard's audio, run the ensemble, write the shard and its labels file."""
        from edgekd.audio import AudioError, load_audio

        shard, utts, out_dir = job
        ens, opts, sr = self.ensemble, self.opts, self.ensemble.sample_rate
        fmt = shard_format_for(len(ens.tokens))
        items, labels, rejected = [], [], []
        t0 = time.time()  # wall clock (not perf_counter): the engines compare shards of several processes
        audio_s, padded_s = 0.0, 0.0  # padded_s: zeros the teacher ran on to square off its batches
        i = 0
        while i < len(utts):
            batch, waves, total = [], [], 0.0
            while i < len(utts) and (not batch or total + (utts[i]["duration"] or 0) <= opts.batch_seconds):
                u = utts[i]
                i += 1
                try:
                    waves.append(load_audio(u["audio"], sr))
                except AudioError as e:
                    rejected.append({"id": u["id"], "audio": e.path, "reason": e.reason, "detail": e.detail,
                                     "stage": "pseudolabel"})
                    continue
                batch.append(u)
                total += len(waves[-1]) / sr
            if not batch:
                continue
            lp, lens = ens(waves)
            padded_s += (len(waves) * max(len(w) for w in waves) - sum(len(w) for w in waves)) / sr
            hard = ens.hard_labels(waves)  # a seq2seq teacher's transcripts and confidences, if any
            texts = [h[0] for h in hard] if hard else self._decode(lp, lens)
            for j, (u, w, row, n, text) in enumerate(zip(batch, waves, lp, lens, texts)):
                row = row[: int(n)].numpy()
                items.append((u["id"], encode_topk(row, opts.k, opts.mass_eps, with_tail=fmt == 3)))
                conf = hard[j][1] if hard else confidence(row)
                labels.append(PseudoLabel(id=u["id"], audio=u["audio"], duration=len(w) / sr, text=text,
                                          confidence=round(conf, 6), frames=int(n)).to_dict())
                audio_s += len(w) / sr
        out = Path(out_dir)
        write_jsonl(out / f"shard-{shard:05d}.labels.jsonl", labels + [{"_rejected": r} for r in rejected])
        fault_point("pseudolabel-between-shard-files")
        write_shard(out, shard, items, fmt=fmt)  # written last: its presence marks the shard done
        return {"shard": shard, "audio_s": audio_s, "padded_s": padded_s, "seconds": time.time() - t0, "t_start": t0, "t_end": time.time()}


def deal_shards(rows: list[dict], opts: PseudoLabelOptions) -> list[list[dict]]:
    """Duration-sorted rows (longest first) -> shards: contiguous runs of about equal audio.

    Contiguous, so a shard's batches hold similar lengths and pad little (dealing rows like cards
    balanced shards too, but put long and short clips in one batch: 47 % padding, measured).
    About equal audio (total / max(ceil(n / shard_utts), min(n, min_shards))), and at most
    `shard_utts` rows, so shards cost about the same: cut by count, the first shard held all the
    long utterances and one worker labeled it while the others idled. Independent of the worker
    count: a resume with other workers finds the same shards."""
    import math

    n = len(rows)
    if not n:
        return []
    total = sum(r["duration"] or 0.0 for r in rows)
    target = total / max(math.ceil(n / opts.shard_utts), min(n, opts.min_shards))
    shards, cur, acc = [], [], 0.0
    for r in rows:
        cur.append(r)
        acc += r["duration"] or 0.0
        if acc >= target * (1 - 1e-9) or len(cur) >= opts.shard_utts:
            shards.append(cur)
            cur, acc = [], 0.0
    return shards + ([cur] if cur else [])
