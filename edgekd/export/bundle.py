"""A labelled bundle for on-device WER: audio, references, and the host PyTorch run to compare with.

The torch-free runner (`edgekd/bench/runner.py --bundle DIR`, scored by `bench/labelled.py`)
decodes the bundle on the device and reports WER and the share of transcripts identical to the
host's, so a device whose runtime decodes differently is caught there, not in the field.

Audio is stored as 16-bit WAV (what devices record), and everything on the host — features,
PyTorch transcripts, checksums — is computed from that 16-bit audio, so the device sees exactly
the input the host reference saw. The features come from the model's pinned featurizer: the
runner has no featurizer of its own (it would be a second implementation), except inside a
waveform-input graph, which is fed the WAVs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgekd.models import Checkpoint

BUNDLE_SCHEMA = "edgekd-bundle-1"  # bench/labelled.py checks the same string


def make_bundle(ck: Checkpoint, manifest: str | Path, out: str | Path, *, max_utts: int = 20,
                long_seconds: float = 30.0) -> Path:
    """Write `out`/bundle.json, features.npz and wavs/ for up to `max_utts` utterances (+ long audio)."""
    import soundfile as sf

    from edgekd.audio import featurize
    from edgekd.export.runtime import TorchRuntime
    from edgekd.export.verify import GATES, verify_set

    out = Path(out)
    (out / "wavs").mkdir(parents=True, exist_ok=True)
    rt = TorchRuntime(ck)
    utts, feats = [], {}
    for i, u in enumerate(verify_set(ck, manifest, max_utts, long_seconds)):
        pcm = np.clip(np.round(u.wave * 32768), -32768, 32767).astype(np.int16)
        sf.write(out / "wavs" / f"{i}.wav", pcm, ck.featurizer.sample_rate, subtype="PCM_16")
        f, n = featurize([pcm.astype(np.float32) / 32768], ck.featurizer)
        feats[str(i)] = f[0, : int(n[0])].numpy()
        lp = rt.log_probs(feats[str(i)])
        d = rt.decode(pcm.astype(np.float32) / 32768)
        utts.append({"id": u.id, "text": u.text, "host_text": d.text, "host_checksum": float(lp.max(-1).sum()),
                     "seconds": round(len(pcm) / ck.featurizer.sample_rate, 2)})
    np.savez(out / "features.npz", **feats)
    meta = {"schema": BUNDLE_SCHEMA, "tokens": list(ck.tokens), "featurizer": ck.featurizer.to_dict(),
            "subsampling": ck.dims.subsampling, "host": {"runtime": "torch", "precision": "fp32"},
            "gates": {p: g.min_identical for p, g in GATES.items()} | {"int8": GATES["int8-dynamic"].min_identical},
            "default_gate": GATES["fp32"].min_identical,
            "utterances": utts}
    (out / "bundle.json").write_text(json.dumps(meta, indent=1))
    return out
