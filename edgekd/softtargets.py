"""Soft-target storage: a teacher's per-frame posteriors, kept compactly and rebuildable.

Encoding (per frame, log-probs at temperature 1 so any temperature can be derived later): the
most probable tokens are kept until their mass reaches 1 - `mass_eps` or `k` tokens are kept
(a trained CTC model's frames mostly need 1-2). Per frame: a uint8 count and the uint8-quantised
log of the mass left over; per kept token: a uint8 id and its uint8-quantised log-prob
(-log p / `LOGP_STEP`, i.e. 1/16 nat steps: +-3 % relative, p down to 1e-7). Storing the left-over
mass explicitly matters: rebuilding it as 1 - sum(kept) amplifies the rounding of the kept
probabilities, and at KD temperatures > 1 that tail is what the student sees (measured on the
shipped teacher: KL at T=2 of 0.48 without it vs 0.040 with it, the same as float16 storage).
On decoding the left-over mass is spread uniformly over the tokens not kept and the frame is
renormalised, so the rebuilt distribution sums to 1.

Token ids are uint8 up to 256 tokens and uint16 above (a NeMo or zipformer CTC teacher's 500-1024
pieces); such token sets get format 2 shards (`shard_format_for`): format 3's tail prior is (V, V).

Shards (`shard-00000.npz`, deflate-compressed) hold many utterances; the kept log-probs of a
frame are stored as differences (`dq`, see `delta_q`: 10 % fewer bytes, lossless); `index.json` maps id ->
(shard, frame offset, entry offset, frames); `meta.json` holds tokens, frame rate, k, teachers
and the bytes per frame on disk. Shards are written atomically (temp + rename), so a shard file
that exists is complete. Older shards (absolute `q`, or edgekd 0.1's float16 log-probs) are still read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.errors import EdgekdError
from edgekd.shardcodec import from_container, pack_ids, read_format, to_container, unpack, unpack_ids, unzstd


LOGP_STEP = 1.0 / 16  # nats per quantisation step of a stored log-prob


def _quantise(neg_log: np.ndarray) -> np.ndarray:
    return np.clip(np.round(neg_log / LOGP_STEP), 0, 255).astype(np.uint8)


MAX_FORMAT3_VOCAB = 256  # format 3 stores uint8 ids and a (V, V) tail prior; larger sets use format 2
MAX_VOCAB = 65536  # format 2 with uint16 ids (NeMo and zipformer CTC models have 500-1024 pieces)


def shard_format_for(vocab_size: int) -> int:
    """The shard format a token set gets: 3 (compact, uint8 ids) up to 256 tokens, else 2 (uint16 ids)."""
    return 3 if vocab_size <= MAX_FORMAT3_VOCAB else 2


def encode_topk(log_probs: np.ndarray, k: int = 8, mass_eps: float = 1e-3,
                with_tail: bool = False) -> dict[str, np.ndarray]:
    """(T, V) log-probs -> {"counts": (T,) uint8, "ids": (E,) uint8 (uint16 when V > 256), "q": (E,)
    uint8, "rest": (T,) uint8}.

    `with_tail` adds "tail": (V, V) float64, the mass of the tokens not kept summed by the frame's
    best token (row) and token (column): what format 3 shards rebuild the tail from (shardcodec)."""
    lp = np.asarray(log_probs, dtype=np.float64)
    if lp.ndim != 2 or lp.shape[1] > MAX_VOCAB or (with_tail and lp.shape[1] > MAX_FORMAT3_VOCAB):
        raise ValueError(f"expected (T, V<={MAX_VOCAB}) log-probs (V<={MAX_FORMAT3_VOCAB} with the format 3 tail), "
                         f"got {lp.shape}")
    kk = min(k, lp.shape[1])
    order = np.argsort(-lp, axis=1, kind="stable")[:, :kk]  # (T, kk) most probable first
    top = np.take_along_axis(lp, order, axis=1)
    cum = np.cumsum(np.exp(top), axis=1)
    # keep token j while the mass before it is < 1 - eps: at least one token per frame
    keep = np.concatenate([np.ones((lp.shape[0], 1), bool), cum[:, :-1] < 1 - mass_eps], axis=1)
    rest = 1.0 - np.where(keep, np.exp(top), 0.0).sum(1)
    out = {"counts": keep.sum(1).astype(np.uint8),
           "ids": order[keep].astype(np.uint8 if lp.shape[1] <= MAX_FORMAT3_VOCAB else np.uint16),
           "q": _quantise(-top[keep]), "rest": _quantise(-np.log(np.clip(rest, 1e-30, None)))}
    if with_tail:
        unkept = np.exp(lp)
        unkept[np.arange(len(lp))[:, None], np.where(keep, order, order[:, :1])] = 0.0  # kept (and the best) out
        tail = np.zeros((lp.shape[1], lp.shape[1]))
        np.add.at(tail, order[:, 0], unkept)
        out["tail"] = tail
    return out


def _dequantise(counts: np.ndarray, q: np.ndarray, rest: np.ndarray, vocab_size: int):
    """-> (kept log-probs (E,), left-over log-mass (T,)), renormalised so each frame sums to 1."""
    return _normalise(counts, -q.astype(np.float64) * LOGP_STEP, -rest.astype(np.float64) * LOGP_STEP, vocab_size)


def _normalise(counts: np.ndarray, lp: np.ndarray, rest_lp: np.ndarray, vocab_size: int):
    """Kept log-probs (E,) and left-over log-mass (T,) as stored -> the same, each frame summing to 1."""
    n = counts.astype(np.int64)
    frame = np.repeat(np.arange(len(n)), n)
    rest_p = np.where(n < vocab_size, np.exp(rest_lp), 0.0)
    total = rest_p.copy()
    np.add.at(total, frame, np.exp(lp))
    log_total = np.log(total)
    with np.errstate(divide="ignore"):
        return (lp - log_total[frame]).astype(np.float32), (np.log(rest_p) - log_total).astype(np.float32)


def _rebuild(counts: np.ndarray, ids: np.ndarray, lp: np.ndarray, rest_lp: np.ndarray, vocab_size: int,
             prior: np.ndarray | None = None) -> np.ndarray:
    """(T, V) log-probs: kept tokens as stored, the left-over mass spread over the others uniformly,
    or (format 3) in proportion to `prior[best token of the frame]`."""
    n = counts.astype(np.int64)
    frame = np.repeat(np.arange(len(n)), n)
    ids = ids.astype(np.int64)
    if prior is None:
        fill = (rest_lp - np.log(np.maximum(vocab_size - n, 1))).astype(np.float32)  # -inf when all kept
        out = np.repeat(fill[:, None], vocab_size, axis=1)
    else:
        best = ids[np.cumsum(n) - n] if len(ids) else np.zeros(len(n), np.int64)
        shape = prior[best] + 1e-30  # (T, V); kept tokens are overwritten below, so only unkept ones count
        shape[frame, ids] = 0.0
        with np.errstate(divide="ignore"):
            out = (np.log(shape / shape.sum(1, keepdims=True)) + rest_lp[:, None]).astype(np.float32)
    out[frame, ids] = lp
    return out


def implied_rest(counts: np.ndarray, lp: np.ndarray, vocab_size: int) -> np.ndarray:
    """Left-over log-mass as edgekd 0.1 implied it, log(1 - sum(kept)) (-inf when all V are kept)."""
    n = counts.astype(np.int64)
    kept = np.zeros(len(n))
    np.add.at(kept, np.repeat(np.arange(len(n)), n), np.exp(lp.astype(np.float64)))
    with np.errstate(divide="ignore"):
        return np.where(n < vocab_size, np.log(np.clip(1 - kept, 1e-12, None)), -np.inf).astype(np.float32)


def decode_topk(counts: np.ndarray, ids: np.ndarray, q: np.ndarray, rest: np.ndarray, vocab_size: int) -> np.ndarray:
    """Inverse of `encode_topk`: (T, V) float32 log-probs; the left-over mass is spread uniformly."""
    return _rebuild(counts, ids, *_dequantise(counts, q, rest, vocab_size), vocab_size)


def softmax_at_temperature(log_probs: np.ndarray, temperature: float) -> np.ndarray:
    """p_T ∝ p^(1/T), returned as log-probs (what KD at temperature T compares against)."""
    z = np.asarray(log_probs, dtype=np.float64) / temperature
    z = z - z.max(-1, keepdims=True)
    return (z - np.log(np.exp(z).sum(-1, keepdims=True))).astype(np.float32)


def delta_q(counts: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Kept log-probs of a frame are sorted (most probable first), so their quantised values only
    grow: store the first of each frame as is and the others as differences (small, >= 0), which
    a compressor packs far better than the values themselves."""
    n = counts.astype(np.int64)
    first = np.zeros(len(q), bool)
    first[(np.cumsum(n) - n)[n > 0]] = True
    d = q.astype(np.int16)
    d[1:] = d[1:] - q[:-1].astype(np.int16)
    return np.where(first, q, d).astype(np.uint8)


def unpack_q(counts: np.ndarray, stored: np.ndarray, delta: bool) -> np.ndarray:
    """Inverse of `delta_q` (identity when the shard stores absolute values)."""
    if not delta:
        return stored
    n = counts.astype(np.int64)
    starts = np.cumsum(n) - n
    c = np.cumsum(stored.astype(np.int64))
    base = np.repeat(c[starts[n > 0]] - stored[starts[n > 0]], n[n > 0])  # cumsum before each frame
    return (c - base).astype(np.uint8)


def pack_shard_arrays(items: list[tuple[str, dict[str, np.ndarray]]], delta: bool = True) -> dict[str, np.ndarray]:
    """The arrays one shard stores for (utterance id, encoded) pairs; `dq` replaces `q` when delta."""
    enc = [e for _, e in items]
    cat = {k: np.concatenate([e[k] for e in enc]) if enc else np.zeros(0, np.uint8) for k in ("counts", "ids", "q", "rest")}
    arrays = {"utt_ids": np.array([u for u, _ in items], dtype=object).astype(str),
              "frames": np.array([len(e["counts"]) for e in enc], np.int64), **cat}
    if delta:
        arrays["dq"] = delta_q(arrays["counts"], arrays.pop("q"))
    return arrays


def _atomic_savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    # deflate: LZMA and bzip2 save another 0.3-0.6 B/frame but cost 3-20x the write time, which
    # pseudo-labeling pays per shard (benchmarks/softtarget_encoding.py prints both).
    from edgekd.atomic import atomic_path

    with atomic_path(path) as tmp:
        np.savez_compressed(tmp, **arrays)


def write_shard(out_dir: str | Path, shard: int, items: list[tuple[str, dict[str, np.ndarray]]],
                fmt: int = 3) -> Path:
    """Write one shard of (utterance id, encoded) pairs atomically; returns its path.

    Format 3 (shardcodec, the default) needs each item's "tail" (encode_topk(with_tail=True)) for
    its prior. Format 2 (`dq`, deflate) is kept for comparisons."""
    from edgekd.atomic import atomic_path
    from edgekd.shardcodec import pack

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"shard-{shard:05d}.npz"
    if fmt == 2:
        _atomic_savez(path, pack_shard_arrays(items))
        return path
    if not items or any("tail" not in e for _, e in items):
        raise ValueError("format 3 shards need every item encoded with encode_topk(..., with_tail=True)")
    a = pack_shard_arrays(items, delta=False)
    tail = sum(e["tail"] for _, e in items)
    arrays = to_container({**pack_ids(a["utt_ids"], a["frames"]), **pack(a["counts"], a["ids"], a["q"], a["rest"], tail)})
    with atomic_path(path) as tmp:
        np.savez(tmp, **arrays)  # stored: the streams are zstd-compressed already
    return path


def write_index(out_dir: str | Path, meta: dict[str, Any]) -> Path:
    """Index every shard in `out_dir` and write `index.json` + `meta.json` (after all shards)."""
    out_dir = Path(out_dir)
    index: dict[str, list[int]] = {}
    frames_total, bytes_total = 0, 0
    formats = []
    for p in sorted(out_dir.glob("shard-*.npz")):
        s = int(p.stem.split("-")[1])
        with np.load(p) as z:
            fo, eo = 0, 0
            fmt = {k: v for k, v in shard_format(z).items() if k != "streams"}
            formats += [fmt] if fmt not in formats else []
            zz = from_container(z) if fmt["version"] == 3 else z
            counts = unzstd(zz["counts"]) if fmt["version"] == 3 else z["counts"]
            for uid, n in zip(*(unpack_ids(zz) if fmt["version"] == 3 else (z["utt_ids"], z["frames"]))):
                n = int(n)
                ne = int(counts[fo : fo + n].sum())
                index[str(uid)] = [s, fo, eo, n]
                fo, eo = fo + n, eo + ne
            frames_total += fo
        bytes_total += p.stat().st_size  # on disk, compressed, utterance ids and all
    meta = {**meta, "utterances": len(index), "frames": frames_total, "logp_step": LOGP_STEP,
            "format": formats[0] if len(formats) == 1 else formats,  # what a reader must do with the shards
            "bytes_per_frame": round(bytes_total / max(frames_total, 1), 3)}
    from edgekd.atomic import atomic_write

    for name, obj in (("index.json", index), ("meta.json", meta)):
        atomic_write(out_dir / name, json.dumps(obj))
    return out_dir / "meta.json"


def shard_format(z) -> dict:
    """What an opened shard is: its own `format` entry (format 3 on), else told by its keys."""
    if "format" in z:
        return read_format(z)
    if "dq" in z:
        return {"name": "edgekd-softtargets", "version": 2, "codec": "deflate", "q": "delta within frame"}
    return {"name": "edgekd-softtargets", "version": 1 if "q" in z else 0, "codec": "deflate"}


class SoftTargets:
    """Reader: `get(uid)` -> (T, V) log-probs; `get_topk(uid)` -> kept ids/log-probs per frame."""

    def __init__(self, path: str | Path):
        self.dir = Path(path)
        try:
            self.meta = json.loads((self.dir / "meta.json").read_text())
            self.index = json.loads((self.dir / "index.json").read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise EdgekdError(f"{self.dir}: not a soft-target folder (meta.json/index.json: {e})") from None
        self.tokens = tuple(self.meta["tokens"])
        self.frame_rate = float(self.meta["frame_rate"])
        self.ids = list(self.index)
        self._cache: dict[int, dict[str, np.ndarray]] = {}

    @property
    def tokenizer(self):
        """The teachers' token set, with the sentencepiece model they were trained with if any."""
        from edgekd.tokens import Tokenizer, spm_from_text

        return Tokenizer(self.tokens, spm_from_text(self.meta.get("sentencepiece"), self.tokens, str(self.dir)))

    def __len__(self) -> int:
        return len(self.index)

    def __contains__(self, uid: str) -> bool:
        return uid in self.index

    def _shard(self, s: int) -> dict[str, np.ndarray]:
        if s not in self._cache:
            if len(self._cache) > 8:
                self._cache.pop(next(iter(self._cache)))
            prior = None
            with np.load(self.dir / f"shard-{s:05d}.npz") as z:
                if shard_format(z)["version"] == 3:
                    u = unpack(from_container(z), len(self.tokens))
                    counts, ids, prior = u["counts"], u["ids"], u["prior"]
                    lp, rest = _normalise(counts, u["logp"], u["rest"], len(self.tokens))
                elif "dq" in z or "q" in z:
                    counts, ids = z["counts"], z["ids"]
                    q = unpack_q(counts, z["dq"], True) if "dq" in z else z["q"]
                    lp, rest = _dequantise(counts, q, z["rest"], len(self.tokens))
                else:  # edgekd 0.1 shards: float16 log-probs, left-over mass implied
                    counts, ids = z["counts"], z["ids"]
                    lp = z["logp"].astype(np.float32)
                    rest = implied_rest(counts, lp, len(self.tokens))
                self._cache[s] = {"counts": counts, "ids": ids, "logp": lp, "rest": rest, "prior": prior}
        return self._cache[s]

    def encoded(self, uid: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(counts (T,), ids (E,), kept log-probs (E,) float32, left-over log-mass (T,) float32)."""
        if uid not in self.index:
            raise EdgekdError(f"utterance {uid} has no soft targets in {self.dir}")
        s, fo, eo, n = self.index[uid]
        z = self._shard(s)
        counts = z["counts"][fo : fo + n]
        ne = int(counts.sum())
        return counts, z["ids"][eo : eo + ne], z["logp"][eo : eo + ne], z["rest"][fo : fo + n]

    def get(self, uid: str) -> np.ndarray:
        """(T, V) float32 log-probs at temperature 1 (rebuilt)."""
        return _rebuild(*self.encoded(uid), vocab_size=len(self.tokens), prior=self._shard(self.index[uid][0])["prior"])

    def get_topk(self, uid: str, k: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ids (T, k) int64, logp (T, k) float32 padded with -inf, rest log-mass (T,))."""
        counts, ids, logp, rest = self.encoded(uid)
        k = k or int(self.meta["k"])
        t = len(counts)
        out_ids = np.zeros((t, k), np.int64)
        out_lp = np.full((t, k), -np.inf, np.float32)
        frame = np.repeat(np.arange(t), counts.astype(np.int64))
        slot = np.arange(len(ids)) - np.repeat(np.cumsum(counts.astype(np.int64)) - counts, counts.astype(np.int64))
        out_ids[frame, slot] = ids
        out_lp[frame, slot] = logp
        return out_ids, out_lp, rest
