import pytest
import torch

from edgekd.audio import FeaturizerConfig
from edgekd.errors import EdgekdError
from edgekd.models import load_checkpoint, load_preset, preset_names, read_metadata
from edgekd.models.conformer import ConformerCTC, ConformerDims


@pytest.mark.parametrize("factor", [2, 4, 8])
@pytest.mark.parametrize("T", [0, 1, 10, 57, 100])
def test_output_lengths_match_shapes(factor, T):
    m = ConformerCTC(ConformerDims(d_model=16, n_layers=1, n_heads=2, ffn_dim=16, subsampling=factor,
                                   subsampling_channels=4, conv_kernel=3)).eval()
    T += m.dims.min_frames  # odd and even lengths from the shortest usable input up
    logits, lens = m(torch.randn(2, T, 80), torch.tensor([T, max(m.dims.min_frames, T // 2)]))
    assert logits.shape[1] == int(lens[0])
    assert 1 <= lens[1] <= lens[0]
    assert abs(int(lens[0]) - T / factor) <= 2


def test_padded_batch_equals_unpadded(tiny_model):
    m = tiny_model.model
    x = torch.randn(3, 123, 80)
    lens = torch.tensor([123, 64, 31])
    y, ol = m(x * (torch.arange(123)[None, :, None] < lens[:, None, None]), lens)
    for i in range(3):
        yi, oi = m(x[i : i + 1, : lens[i]], lens[i : i + 1])
        assert int(oi) == int(ol[i])
        assert torch.allclose(yi[0], y[i, : ol[i]], atol=1e-5)


def test_presets_sizes():
    sizes = {n: ConformerCTC(load_preset(n)).num_params() for n in ("teacher-m", "student-s", "student-xs")}
    assert 10e6 <= sizes["teacher-m"] <= 20e6
    assert 2e6 <= sizes["student-s"] <= 4e6
    assert 0.5e6 <= sizes["student-xs"] <= 1.2e6
    assert sizes["student-xs"] <= sizes["teacher-m"] / 8
    with pytest.raises(EdgekdError, match="Known:"):
        load_preset("no-such-preset")
    assert "tiny" in preset_names()


def test_checkpoint_round_trip(tmp_path, tiny_model):
    p = tiny_model.save(tmp_path / "m.safetensors")
    meta = read_metadata(p)
    assert meta["preset"] == "tiny" and meta["tokens"][0] == "<blk>"
    ck = load_checkpoint(p, featurizer=FeaturizerConfig(), tokens=tiny_model.tokens)
    x, lens = torch.randn(1, 50, 80), torch.tensor([50])
    assert torch.equal(ck.model(x, lens)[0], tiny_model.model(x, lens)[0])
    half = load_checkpoint(tiny_model.save(tmp_path / "h.safetensors", dtype=torch.float16))
    assert torch.allclose(half.model(x, lens)[0], tiny_model.model(x, lens)[0], atol=2e-2)


def test_the_same_checkpoint_saves_to_the_same_bytes(tmp_path, tiny_model):
    """safetensors writes metadata in hash-map order (a new order per call); edgekd sorts it, so
    an identical model is an identical file (and sha256: the ONNX teacher cache's key)."""
    import torch

    a, b = tiny_model.save(tmp_path / "a.safetensors"), tiny_model.save(tmp_path / "b.safetensors")
    assert a.read_bytes() == b.read_bytes()
    half = tiny_model.save(tmp_path / "h.safetensors", dtype=torch.float16)
    assert half.read_bytes() == tiny_model.save(tmp_path / "h2.safetensors", dtype=torch.float16).read_bytes()
    back = load_checkpoint(a)
    assert read_metadata(a)["preset"] == tiny_model.preset and all(
        torch.equal(x, y) for x, y in zip(back.model.state_dict().values(), tiny_model.model.state_dict().values()))


def test_checkpoint_mismatch_is_refused(tmp_path, tiny_model):
    p = tiny_model.save(tmp_path / "m.safetensors")
    with pytest.raises(EdgekdError, match="featurizer mismatch"):
        load_checkpoint(p, featurizer=FeaturizerConfig(n_mels=64))
    with pytest.raises(EdgekdError, match="token set mismatch"):
        load_checkpoint(p, tokens=("<blk>", "a"))
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(EdgekdError, match="not an edgekd"):
        load_checkpoint(tmp_path / "junk.safetensors")
