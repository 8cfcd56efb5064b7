"""Soft targets: encode/decode round trip, compactness, shards + index, temperature."""

import numpy as np
import pytest

from edgekd.softtargets import (LOGP_STEP, SoftTargets, decode_topk, encode_topk, softmax_at_temperature, write_index,
                                write_shard)

V = 29


def _ctc_like(t, seed=0, peaky=9.0):
    """Spiky CTC-like log-probs: mostly blank, sometimes a token, a few uncertain frames."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((t, V))
    z[:, 0] += peaky
    spikes = rng.random(t) < 0.25
    z[spikes, rng.integers(1, V, spikes.sum())] += peaky + 2
    z[rng.random(t) < 0.1] *= 0.3  # flat, uncertain frames
    return z - np.log(np.exp(z).sum(1, keepdims=True))


def test_round_trip_within_tolerance():
    lp = _ctc_like(500)
    rebuilt = decode_topk(**encode_topk(lp, k=8, mass_eps=1e-3), vocab_size=V)
    p, q = np.exp(lp), np.exp(rebuilt)
    assert np.allclose(q.sum(1), 1.0, atol=1e-3)
    enc = encode_topk(lp, k=8, mass_eps=1e-3)
    frame = np.repeat(np.arange(len(lp)), enc["counts"])
    kept = np.zeros(len(lp))
    np.add.at(kept, frame, p[frame, enc["ids"]])
    # the dropped mass is spread uniformly (total variation <= 2 x dropped) and every stored
    # log-prob is within half a quantisation step (+-1/32 nat: <= 3.2 % relative, plus renormalising)
    assert (np.abs(p - q).sum(1) <= 2 * (1 - kept) + 0.07).all()
    assert np.abs(np.exp(-enc["q"].astype(np.float64) * LOGP_STEP) / p[frame, enc["ids"]] - 1).max() <= np.expm1(LOGP_STEP / 2) + 1e-9
    assert (rebuilt[np.arange(len(lp)), lp.argmax(1)] == rebuilt.max(1)).all()  # up to quantisation ties
    kl = (p * (lp - rebuilt)).sum(1)
    assert np.median(kl) < 1e-3


def test_left_over_mass_is_stored_not_implied():
    """A flat teacher (8 tokens never reach 1 - eps): the tail keeps its own mass, so rounding the
    kept probabilities does not leak into it; at T=2 the rebuilt tail stays close to the truth."""
    rng = np.random.default_rng(3)
    lp = rng.standard_normal((300, V)) * 1.5
    lp -= np.log(np.exp(lp).sum(1, keepdims=True))
    rebuilt = decode_topk(**encode_topk(lp, k=8), vocab_size=V)
    enc = encode_topk(lp, k=8)
    frame = np.repeat(np.arange(len(lp)), enc["counts"])
    true_rest = 1 - np.bincount(frame, np.exp(lp)[frame, enc["ids"]], minlength=len(lp))
    got_rest = 1 - np.bincount(frame, np.exp(rebuilt)[frame, enc["ids"]], minlength=len(lp))
    assert np.allclose(got_rest, true_rest, rtol=0.07)
    assert np.allclose(np.exp(rebuilt).sum(1), 1, atol=1e-5)


def test_full_k_is_near_lossless_and_compact_on_spiky():
    lp = _ctc_like(400, seed=1)
    full = decode_topk(**encode_topk(lp, k=V, mass_eps=0.0), vocab_size=V)
    assert np.abs(full - lp)[np.exp(lp) > 1e-6].max() < 2 * LOGP_STEP  # quantisation (+ renormalising) only
    spiky = _ctc_like(400, seed=1, peaky=12.0)  # a trained CTC model: blank ~0.9997 between spikes
    enc = encode_topk(spiky, k=8)
    bytes_per_frame = sum(a.nbytes for a in enc.values()) / len(spiky)  # uncompressed: 2 + 2 per kept token
    assert bytes_per_frame == pytest.approx(2 + 2 * enc["counts"].mean()) and bytes_per_frame <= 8
    assert enc["counts"].max() <= 8 and enc["counts"].min() >= 1


def test_temperature():
    lp = _ctc_like(50, seed=2)
    assert np.allclose(softmax_at_temperature(lp, 1.0), lp, atol=1e-5)
    t2 = np.exp(softmax_at_temperature(lp, 2.0))
    assert np.allclose(t2.sum(1), 1, atol=1e-5)
    ent = lambda p: -(p * np.log(p + 1e-30)).sum(1)  # noqa: E731
    assert (ent(t2) >= ent(np.exp(lp)) - 1e-6).all()  # softer


def test_shards_index_and_reader(tmp_path):
    utts = {f"u{i}": _ctc_like(30 + 7 * i, seed=i) for i in range(7)}
    items = [(u, encode_topk(lp, with_tail=True)) for u, lp in utts.items()]
    write_shard(tmp_path, 0, items[:4])
    write_shard(tmp_path, 1, items[4:])
    meta = write_index(tmp_path, {"tokens": ["<blk>"] + [chr(97 + i) for i in range(V - 1)], "frame_rate": 25.0, "k": 8})
    st = SoftTargets(tmp_path)
    assert len(st) == 7 and set(st.ids) == set(utts) and st.frame_rate == 25.0
    for uid, lp in utts.items():
        got = st.get(uid)
        assert got.shape == lp.shape
        assert (got[np.arange(len(lp)), lp.argmax(1)] == got.max(1)).all()  # argmax kept (up to quantisation ties)
        ids, lpk, rest = st.get_topk(uid)
        assert ids.shape == (len(lp), 8) and np.isneginf(lpk).any()
        assert np.allclose(np.exp(lpk).sum(1) + np.exp(rest), 1, atol=1e-5)
        assert (ids[:, 0] == lp.argmax(1)).all()
    import json

    m = json.loads(meta.read_text())
    assert m["frames"] == sum(len(v) for v in utts.values())
    on_disk = sum(p.stat().st_size for p in tmp_path.glob("shard-*.npz"))
    assert m["bytes_per_frame"] == round(on_disk / m["frames"], 3)
    assert not list(tmp_path.glob("*.tmp*"))


def test_reader_refuses_non_soft_target_dir(tmp_path):
    from edgekd.errors import EdgekdError

    with pytest.raises(EdgekdError, match="not a soft-target folder"):
        SoftTargets(tmp_path)


def test_delta_coded_log_probs_round_trip_exactly(tmp_path):
    """Shards store each frame's kept log-probs as differences; decoding gives the same bytes, also
    when a difference is negative (wraps in uint8), and shards with absolute `q` are still read."""
    from edgekd.softtargets import delta_q, pack_shard_arrays, unpack_q

    enc = encode_topk(_ctc_like(400, seed=3))
    a = pack_shard_arrays([("u", enc)])
    assert "q" not in a and (unpack_q(enc["counts"], a["dq"], True) == enc["q"]).all()
    assert (a["dq"] <= enc["q"]).all() and a["dq"].sum() < enc["q"].sum()  # smaller values: what compresses
    counts, q = np.array([3, 0, 2], np.uint8), np.array([9, 4, 200, 7, 255], np.uint8)  # unsorted on purpose
    assert (unpack_q(counts, delta_q(counts, q), True) == q).all()
    import zipfile

    with zipfile.ZipFile(tmp_path / "shard-00000.npz", "w") as z:  # an older shard: absolute q
        for k, v in {**pack_shard_arrays([("u", enc)], delta=False)}.items():
            with z.open(f"{k}.npy", "w") as f:
                np.lib.format.write_array(f, v)
    write_index(tmp_path, {"tokens": ["<blk>"] + [chr(97 + i) for i in range(V - 1)], "frame_rate": 25.0, "k": 8})
    old = SoftTargets(tmp_path).get("u")
    write_shard(tmp_path, 0, [("u", enc)], fmt=2)
    assert np.array_equal(SoftTargets(tmp_path).get("u"), old)
    assert np.array_equal(old, decode_topk(enc["counts"], enc["ids"], enc["q"], enc["rest"], V))


def _kl(p_lp, q_lp, t):
    p, q = softmax_at_temperature(p_lp, t).astype(np.float64), softmax_at_temperature(q_lp, t).astype(np.float64)
    return float((np.exp(p) * (p - q)).sum(-1).mean())


def _uncertain(t, seed):
    """A teacher with a long, structured tail: which tokens trail depends on the best one."""
    rng = np.random.default_rng(seed)
    best = rng.choice(V, t, p=np.r_[0.6, np.full(V - 1, 0.4 / (V - 1))])
    z = rng.standard_normal((t, V)) * 0.7 + np.linspace(0, -6, V)[(np.arange(V)[None, :] + best[:, None]) % V]
    z[np.arange(t), best] += 6 + rng.random(t) * 4
    return z - np.log(np.exp(z).sum(1, keepdims=True))


def test_format3_round_trip_is_smaller_at_no_worse_kl(tmp_path):
    """Format 3 (zstd, coarser non-best log-probs, tail by the shard's prior) against format 2 on the
    same encoded frames: fewer bytes on disk, KL to the teacher no higher at T=1 and T=2, argmax kept;
    the shard and meta.json say which format they are."""
    import json

    tokens = ["<blk>"] + [chr(97 + i) for i in range(V - 1)]
    utts = {f"utt-{i:04d}": _uncertain(120 + 13 * i, i) for i in range(60)}
    items = [(u, encode_topk(lp, with_tail=True)) for u, lp in utts.items()]
    res = {}
    for fmt in (2, 3):
        d = tmp_path / f"f{fmt}"
        write_shard(d, 0, items, fmt=fmt)
        meta = json.loads(write_index(d, {"tokens": tokens, "frame_rate": 25.0, "k": 8}).read_text())
        st = SoftTargets(d)
        got = {u: st.get(u) for u in utts}
        got3 = got
        assert meta["format"]["version"] == fmt
        res[fmt] = (meta["bytes_per_frame"], *[np.mean([_kl(utts[u], got[u], t) for u in utts]) for t in (1, 2)])
        agree = np.mean(np.concatenate([got[u].argmax(1) == utts[u].argmax(1) for u in utts]))
        assert agree >= 0.995, (fmt, agree)  # up to quantisation ties
        assert all(np.allclose(np.exp(got[u]).sum(1), 1, atol=1e-4) for u in utts)
    (b2, kl2_1, kl2_2), (b3, kl3_1, kl3_2) = res[2], res[3]
    assert b3 < 0.85 * b2, res
    assert kl3_1 <= kl2_1 and kl3_2 <= kl2_2, res
    shard = tmp_path / "f3" / "shard-00000.npz"
    with np.load(shard) as z:
        assert z["format"].dtype == np.uint8  # UTF-8 bytes, not a 4-bytes-a-character numpy str
        assert json.loads(z["format"].tobytes().decode("utf-8"))["codec"].startswith("zstd")
        entries = {k: z[k] for k in z.files}
    # a shard written before (the same entry as a numpy str) reads to the same targets
    entries["format"] = np.array(entries["format"].tobytes().decode("utf-8"))
    np.savez(shard, **entries)
    assert all(np.array_equal(SoftTargets(tmp_path / "f3").get(u), got3[u]) for u in utts)


def test_format3_keeps_ids_counts_and_best_log_prob_exactly(tmp_path):
    from edgekd.shardcodec import from_container, pack, unpack

    lp = _uncertain(500, 7)
    enc = encode_topk(lp, with_tail=True)
    with np.load(write_shard(tmp_path, 0, [("a", enc)])) as z:
        u = unpack(from_container(z), V)
    assert (u["counts"] == enc["counts"]).all() and (u["ids"] == enc["ids"]).all()
    first = np.cumsum(enc["counts"].astype(int)) - enc["counts"]
    assert np.allclose(-u["logp"][first], enc["q"][first] * LOGP_STEP)  # the best token at full precision
    # a prior row is P(token | best): the tail mass of frames whose best token is blank, normalised
    assert np.allclose(u["prior"][0] / u["prior"][0].sum(), enc["tail"][0] / enc["tail"][0].sum(), rtol=0.15, atol=1e-3)
    # near ties between the two best tokens: the coarser second one must not overtake the stored best
    base = np.full(V, 0.18 / (V - 2))
    base[5], base[2] = 0.41, 0.41  # best (5) above an id that wins ties (2)
    tie = np.log(np.tile(base, (200, 1)))
    tie[:, 2] += np.linspace(-0.08, -0.001, 200)
    tie -= np.log(np.exp(tie).sum(1, keepdims=True))
    te = encode_topk(tie, with_tail=True)
    write_shard(tmp_path / "tie", 0, [("t", te)])
    write_index(tmp_path / "tie", {"tokens": ["<blk>"] + [chr(97 + i) for i in range(V - 1)], "frame_rate": 25.0, "k": 8})
    best = te["ids"][np.cumsum(te["counts"].astype(int)) - te["counts"]]
    assert (SoftTargets(tmp_path / "tie").get("t").argmax(1) == best).all()
    with pytest.raises(ValueError, match="with_tail"):
        write_shard(tmp_path, 1, [("b", encode_topk(lp))])
    assert pack  # the writer's half, used through write_shard above


def test_a_teacher_of_more_than_256_tokens_gets_16_bit_ids_in_format_2_shards(small_corpus, tmp_path):
    """NeMo and zipformer CTC teachers have 500-1024 pieces: their soft targets are stored with
    uint16 ids (format 2: format 3's tail prior would be V x V) and read back like any others."""
    import torch

    from edgekd.audio import FeaturizerConfig, load_audio
    from edgekd.manifest import read_manifest
    from edgekd.models import Checkpoint, load_preset
    from edgekd.models.conformer import ConformerCTC
    from edgekd.pseudolabel import PseudoLabelOptions, run_pseudolabel
    from edgekd.teachers import load_teacher
    from edgekd.tokens import BLANK

    tokens = (BLANK, *[f"▁p{i}" for i in range(299)])
    torch.manual_seed(0)
    model = ConformerCTC(load_preset("tiny", vocab_size=len(tokens))).eval()
    with torch.no_grad():
        model.head.weight.mul_(8.0)  # confident outputs, so the best token is well defined
    Checkpoint(model, FeaturizerConfig(), tokens, "tiny").save(tmp_path / "t.safetensors")
    run_pseudolabel(PseudoLabelOptions(workers=1, review_fraction=0.0), small_corpus / "target/train.jsonl",
                    [str(tmp_path / "t.safetensors")], tmp_path / "pl", progress=False)
    st = SoftTargets(tmp_path / "pl")
    assert st.meta["format"]["version"] == 2 and st.tokens == tokens
    with np.load(next((tmp_path / "pl").glob("shard-*.npz"))) as z:
        assert z["ids"].dtype == np.uint16 and z["ids"].max() > 255
    teacher = load_teacher(str(tmp_path / "t.safetensors"))
    u = read_manifest(small_corpus / "target/train.jsonl")[0]
    out = teacher([load_audio(u.audio, teacher.sample_rate)])
    want = out.logits[0, : int(out.lengths[0])].numpy()
    got = st.get(u.id)
    assert got.shape == want.shape and (got.argmax(-1) == want.argmax(-1)).mean() > 0.95
    with pytest.raises(ValueError, match="V<=256 with the format 3 tail"):
        encode_topk(want, with_tail=True)
