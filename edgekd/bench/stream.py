"""The runner's cache-aware streaming loop and its latency suite (numpy only, never torch).

Standalone like runner.py: copied beside it to a device (ssh_bench, the Docker image) and imported
when a model's metadata says contract `nemo-cache-aware-ctc` -- the ONNX file for sherpa-onnx
(edgekd/export/streaming.py) and the LiteRT file (export/litert_streaming.py, whose sidecar holds
the same metadata). The host imports the same file as `edgekd.bench.stream` (the estimator's
window arithmetic, benchmarks/bench_streaming.py's replay), so host and device share one definition.

The loop, as sherpa-onnx's online recognizer runs it: the caches start as zeros of the metadata's
shapes (`cache_last_channel_dim1..3`, `cache_last_time_dim1..3`, length 0); every call reads
`window_size` feature frames, the stream advances `chunk_shift`, and the three caches a call returns
are fed to the next. A window runs only while start + window < frames (strictly, as sherpa does),
so the last frames wait for the tail padding a client sends at end of speech.

Latency, in a replay where audio arrives in real time (the definitions of bench_streaming.py):
- chunk compute: the wall time of one call; RTF = sum of chunk compute / audio those chunks advance;
- a window can start once the last sample its last frame reads has arrived (kaldi framing with
  snip_edges=false: frame k reads samples up to k*hop + hop/2 + win/2) -- at end of speech the
  tail padding arrives at once -- and once the previous window has finished;
- first partial: audio start -> finish of the first window after which the greedy text is not
  empty. On synthetic features there is no text to read: the first window is taken to emit text,
  which is the earliest a partial can come (a lower bound);
- final: end of speech -> finish of the last window: the compute of the windows still owed when
  the tail padding arrives (not the wait for a chunk to fill).
"""

from __future__ import annotations

import json
import time

import numpy as np

CONTRACT = "nemo-cache-aware-ctc"
INPUTS = ("audio_signal", "length", "cache_last_channel", "cache_last_time", "cache_last_channel_len")
OUTPUTS = ("logprobs", "encoded_lengths", "cache_last_channel_next", "cache_last_time_next",
           "cache_last_channel_next_len")
# Silence a client appends at end of speech so the last frames fill a window: sherpa runs a window
# only once it is complete (sherpa-onnx's own streaming examples pad 0.66 s). The exporter
# (edgekd.export.streaming) imports these names from here.
TAIL_PADDING_S = 0.66


def is_cache_aware(metadata: dict) -> bool:
    return metadata.get("contract") == CONTRACT


class Framing:
    """Sample <-> feature-frame arithmetic of the model's featurizer (metadata `featurizer`)."""

    def __init__(self, metadata: dict):
        try:
            fz = json.loads(metadata.get("featurizer") or "{}")
        except (TypeError, ValueError):
            fz = {}
        self.sample_rate = int(fz.get("sample_rate", 16000))  # edgekd's featurizer defaults: 16 kHz,
        self.hop = int(fz.get("hop_length", 160))  # 10 ms hop, 25 ms window
        self.win = int(fz.get("win_length", 400))
        self.fps = self.sample_rate / self.hop

    def frames(self, samples: int) -> int:
        """Feature frames of `samples` samples (snip_edges=false: one frame per hop, rounded)."""
        return (samples + self.hop // 2) // self.hop

    def ready_s(self, last_frame: int) -> float:
        """When the last sample `last_frame` reads has arrived, in seconds from audio start."""
        return (last_frame * self.hop + self.hop // 2 + self.win // 2) / self.sample_rate


def window_starts(n_frames: int, window: int, shift: int) -> range:
    """First frame of every window a stream of `n_frames` frames runs (sherpa's strict `<`)."""
    return range(0, max(0, n_frames - window), shift)


class CacheStream:
    """A cache-aware model (runner.OnnxModel / LiteRtModel) driven window by window."""

    def __init__(self, model):
        meta, self.model = model.metadata, model
        try:
            self.window, self.shift = int(meta["window_size"]), int(meta["chunk_shift"])
            self.k_shape = (1, *(int(meta[f"cache_last_channel_dim{i}"]) for i in (1, 2, 3)))
            self.c_shape = (1, *(int(meta[f"cache_last_time_dim{i}"]) for i in (1, 2, 3)))
        except (KeyError, ValueError) as e:
            raise SystemExit(f"runner: streaming model metadata lacks {e} (re-export it with edgekd)") from None
        by_name = {i.name: i for i in model.inputs}
        self.onnx = all(n in by_name for n in INPUTS)
        if self.onnx:  # the NeMo contract: inputs and outputs by name, features channel-first
            self.x, self.n_in, self.len_dtype = by_name[INPUTS[0]], by_name[INPUTS[4]], by_name[INPUTS[1]].dtype
            self.n_mels = self.x.shape[1] or 80
            outs = [o.name for o in model.sess.get_outputs()]
            self.pos = [outs.index(n) for n in (OUTPUTS[0], *OUTPUTS[2:])]
        else:  # LiteRT renames tensors: told apart by shape, as export/litert_streaming.py does
            shapes = [tuple(i.shape) for i in model.inputs]
            ints = [i for i in model.inputs if i.dtype.kind in "iu"]
            feats = [i for i in model.inputs if i.dtype.kind == "f" and len(i.shape) == 3]
            if (len(model.inputs) != 4 or self.k_shape == self.c_shape or len(ints) != 1 or len(feats) != 1
                    or self.k_shape not in shapes or self.c_shape not in shapes):
                raise SystemExit(f"runner: streaming model inputs {shapes} do not match its cache metadata "
                                 f"{self.k_shape}, {self.c_shape}: re-export it")
            self.x, self.n_in = feats[0], ints[0]
            self.n_mels = self.x.shape[2]
            self.by_shape = {tuple(i.shape): i.name for i in model.inputs if i is not self.n_in}
        self.compute_s = 0.0
        self.reset()

    def reset(self) -> None:
        """A new stream: zero caches, nothing cached yet."""
        self.k = np.zeros(self.k_shape, np.float32)
        self.c = np.zeros(self.c_shape, np.float32)
        self.n = np.zeros(1, self.n_in.dtype)

    def step(self, x: np.ndarray) -> np.ndarray:
        """One window of features (window, n_mels) -> log-probs (chunk, V); carries the caches.
        `compute_s` holds the runtime call's wall time (feeds built before the clock starts)."""
        if self.onnx:
            feeds = {INPUTS[0]: np.ascontiguousarray(x.T[None], np.float32),
                     INPUTS[1]: np.array([self.window], self.len_dtype), INPUTS[2]: self.k,
                     INPUTS[3]: self.c, INPUTS[4]: self.n}
        else:
            feeds = {self.x.name: np.ascontiguousarray(x[None], np.float32), self.by_shape[self.k_shape]: self.k,
                     self.by_shape[self.c_shape]: self.c, self.n_in.name: self.n}
        t0 = time.perf_counter()
        outs = self.model.run(feeds)
        self.compute_s = time.perf_counter() - t0
        if self.onnx:
            lp, self.k, self.c, self.n = (outs[i] for i in self.pos)
        else:
            by = {(tuple(o.shape), o.dtype.kind in "iu"): o for o in outs}
            self.k, self.c = by[(self.k_shape, False)], by[(self.c_shape, False)]
            self.n = by[((1,), True)]
            lp = next(o for o in outs if o.ndim == 3)
        return lp[0]

    def timed(self, x: np.ndarray) -> tuple[np.ndarray, float]:
        """(step(x), its compute seconds): the `step` that `replay` takes."""
        return self.step(x), self.compute_s

    def log_probs(self, feats: np.ndarray) -> np.ndarray:
        """Features (T, n_mels) of one new stream -> log-probs (n*chunk, V)."""
        self.reset()
        out = [self.step(feats[s:s + self.window]) for s in window_starts(len(feats), self.window, self.shift)]
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def replay(step, feats: np.ndarray, window: int, shift: int, framing: Framing, eos_s: float, has_text=None):
    """Real-time replay of one stream (see the module docstring).

    `step(x)` runs one window (window, F) and returns (log-probs (C, V), compute seconds);
    `has_text(ids)`: is the greedy text of these token ids non-empty (None: synthetic features, the
    first window counts as the first partial). Returns (computes s, first partial s or None, final s)."""
    finish, first, computes, ids = 0.0, None, [], []
    for s in window_starts(len(feats), window, shift):
        lp, dt = step(feats[s:s + window])
        computes.append(dt)
        finish = max(min(framing.ready_s(s + window - 1), eos_s), finish) + dt
        if first is None:
            ids += lp.argmax(-1).tolist()
            if has_text is None or has_text(ids):
                first = finish
    return computes, first, finish - eos_s


def _pct(xs, q) -> float:
    return float(np.percentile(np.asarray(xs, np.float64), q))


def stream_records(model, args, rng: np.random.Generator, rec) -> None:
    """The latency suite on `args.seconds` of synthetic speech (+ tail padding) per pass; adds its
    records through `rec` (runner.measure's): first_inference, warmup_mean, chunk_latency_*,
    rtf, first_partial_latency_p50/p95, final_latency_p50/p95, all mode "streaming". Each pass
    ends the speech one frame later (modulo a chunk): where speech ends within a chunk decides how
    many windows are still owed, as it does across real utterances (the estimator averages it)."""
    if args.bundle:
        raise SystemExit("runner: --bundle is for offline models; a streaming model is measured on synthetic "
                         "features (benchmarks/bench_streaming.py scores streaming WER on real audio)")
    s, fr = CacheStream(model), Framing(model.metadata)
    chunk_s = s.shift / fr.fps
    if args.chunk_seconds and round(args.chunk_seconds * fr.fps) != s.shift:
        raise SystemExit(f"runner: the streaming model runs chunks of {chunk_s:g} s (fixed at export); "
                         f"--chunk-seconds {args.chunk_seconds:g} asks for another: export one file per chunk size")
    speech, tail = int(round(args.seconds * fr.sample_rate)), int(TAIL_PADDING_S * fr.sample_rate)
    feats = rng.standard_normal((fr.frames(speech + s.shift * fr.hop + tail), s.n_mels)).astype(np.float32)
    starts = window_starts(fr.frames(speech + tail), s.window, s.shift)
    if not len(starts):
        raise SystemExit(f"runner: --seconds {args.seconds:g} is shorter than one window of the streaming model")
    first_call = s.timed(feats[: s.window])[1] * 1e3  # cold: the runtime's first call
    warm = [s.timed(feats[: s.window])[1] * 1e3 for _ in range(args.warmup)]
    per_chunk, rtfs, firsts, finals = [], [], [], []
    deadline = time.perf_counter() + args.max_time
    while len(rtfs) < args.iterations and (len(rtfs) < args.min_iterations or time.perf_counter() < deadline):
        s.reset()
        end = speech + len(rtfs) % s.shift * fr.hop
        comp, first, final = replay(s.timed, feats[: fr.frames(end + tail)], s.window, s.shift, fr, end / fr.sample_rate)
        per_chunk += [c * 1e3 for c in comp]
        rtfs.append(sum(comp) / (len(comp) * chunk_s))
        firsts.append(first * 1e3)
        finals.append(final * 1e3)
    kw = dict(mode="streaming", chunk_seconds=chunk_s, chunk_ms=chunk_s * 1e3, frames=s.window, shift_frames=s.shift,
              chunks_per_pass=len(starts), features="synthetic")
    rec("first_inference", first_call, "ms", **dict(kw, iterations=1))
    if warm:
        rec("warmup_mean", float(np.mean(warm)), "ms", **dict(kw, iterations=len(warm)))
    for k in ("p50", "p90", "p95", "p99"):
        rec(f"chunk_latency_{k}", _pct(per_chunk, int(k[1:])), "ms", **dict(kw, iterations=len(per_chunk)))
    a = np.asarray(per_chunk)
    for k, v in (("mean", a.mean()), ("std", a.std()), ("max", a.max())):
        rec(f"chunk_latency_{k}", float(v), "ms", **dict(kw, iterations=len(per_chunk)))
    rec("rtf", _pct(rtfs, 50), "ratio", **dict(kw, iterations=len(rtfs),
                                               extra={"basis": "sum of chunk compute / audio they advance, p50 over passes"}))
    basis = {"first_partial_latency": "synthetic features: the first window is taken to emit text (audio to fill it "
                                      "+ its compute; a lower bound)",
             "final_latency": f"end of speech -> last window done; {TAIL_PADDING_S:g} s tail padding sent at once"}
    for name, xs in (("first_partial_latency", firsts), ("final_latency", finals)):
        for q in (50, 95):
            rec(f"{name}_p{q}", _pct(xs, q), "ms", **dict(kw, iterations=len(xs), extra={"basis": basis[name]}))
