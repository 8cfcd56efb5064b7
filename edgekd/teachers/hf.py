"""Hugging Face CTC models (wav2vec2 / HuBERT / WavLM style) as edgekd teachers.

`HFCTCTeacher("facebook/wav2vec2-base-960h")` or `HFCTCTeacher("/path/saved_with_save_pretrained")`
loads the model and its processor with `from_pretrained` (a hub id downloads on first use; a
local directory needs no network).

Vocabulary mapping: edgekd students use the character set in `edgekd.tokens`. The HF model's
character vocabulary is mapped onto it — its pad token is the CTC blank, its word delimiter
(`|`) is the space, letters match case-insensitively, `'` maps to `'`. Each edgekd token gets
the log-sum-exp of the HF columns mapped to it; the probability of HF tokens with no edgekd
counterpart (`<s>`, `</s>`, `<unk>`, digits, ...) is added to the blank, i.e. treated as "emit
nothing". The result is a proper distribution over edgekd tokens, so an HF teacher can sit in an
ensemble with edgekd teachers (same tokens) — frame rates still have to match for averaging.
"""

from __future__ import annotations

import numpy as np
import torch

from edgekd.errors import EdgekdError
from edgekd.teachers.base import TeacherOutput
from edgekd.tokens import BLANK, DEFAULT_TOKENS


def vocab_map(hf_vocab: dict[str, int], pad_token: str, delimiter: str = "|",
              tokens: tuple[str, ...] = DEFAULT_TOKENS) -> list[list[int]]:
    """For each edgekd token, the HF ids that map to it; unmapped HF ids go to the blank."""
    groups: list[list[int]] = [[] for _ in tokens]
    index = {t: i for i, t in enumerate(tokens)}
    for sym, hid in hf_vocab.items():
        if sym == pad_token:
            groups[0].append(hid)
        elif sym == delimiter or sym == " ":
            groups[index[" "]].append(hid)
        elif len(sym) == 1 and sym.lower() in index and sym.lower() != BLANK:
            groups[index[sym.lower()]].append(hid)
        else:
            groups[0].append(hid)
    missing = [t for t, g in zip(tokens, groups) if not g and t != BLANK]
    if len(missing) > len(tokens) // 2:
        raise EdgekdError(f"HF vocabulary does not look like a character CTC vocabulary "
                          f"(no match for {len(missing)} of {len(tokens)} tokens, e.g. {missing[:5]})")
    return groups


def is_seq2seq(id_or_dir: str) -> bool:
    """Whether an `hf:` model is an encoder-decoder (Whisper & co) by its config; unreadable: False
    (the CTC loader then says what is wrong)."""
    from transformers import AutoConfig

    try:
        return bool(AutoConfig.from_pretrained(id_or_dir).is_encoder_decoder)
    except (OSError, ValueError):
        return False


class HFCTCTeacher:
    """`transformers` AutoModelForCTC + processor behind the edgekd Teacher interface."""

    def __init__(self, id_or_dir: str, device: str = "cpu"):
        try:
            from transformers import AutoModelForCTC, AutoProcessor
        except ImportError as e:
            raise EdgekdError(f"HF teachers need `pip install 'edgekd[hf]'` ({e})") from None
        try:
            self.processor = AutoProcessor.from_pretrained(id_or_dir)
            self.model = AutoModelForCTC.from_pretrained(id_or_dir).to(device).eval()
        except (OSError, ValueError) as e:
            raise EdgekdError(f"cannot load HF CTC model {id_or_dir!r}: {e}".splitlines()[0]) from None
        tok = self.processor.tokenizer
        self.name = str(id_or_dir).rstrip("/").split("/")[-1]
        self.tokens, self.sentencepiece = DEFAULT_TOKENS, None
        self.groups = vocab_map(tok.get_vocab(), tok.pad_token, getattr(tok, "word_delimiter_token", "|") or "|")
        self.sample_rate = self.processor.feature_extractor.sampling_rate
        self.featurizer = None  # the HF processor featurizes raw waveforms itself
        stride = int(np.prod(self.model.config.conv_stride))
        self.frame_rate = self.sample_rate / stride
        self._stride = stride
        self._kernels = list(zip(self.model.config.conv_kernel, self.model.config.conv_stride))
        self.device = device

    def _out_len(self, n: torch.Tensor) -> torch.Tensor:
        for k, s in self._kernels:
            n = torch.div(n - k, s, rounding_mode="floor") + 1
        return torch.clamp(n, min=0)

    @torch.no_grad()
    def __call__(self, waves: list[np.ndarray]) -> TeacherOutput:
        inputs = self.processor.feature_extractor(waves, sampling_rate=self.sample_rate, return_tensors="pt", padding=True,
                                                  return_attention_mask=True)
        kwargs = {"input_values": inputs["input_values"].to(self.device)}
        if self.model.config.feat_extract_norm == "layer" and "attention_mask" in inputs:
            kwargs["attention_mask"] = inputs["attention_mask"].to(self.device)  # base-style models ignore it
        out = self.model(**kwargs, output_hidden_states=True)
        lp = out.logits.float().log_softmax(-1)  # (B, T, V_hf)
        mapped = torch.stack([torch.logsumexp(lp[..., g], dim=-1) for g in self.groups], dim=-1)
        lens = self._out_len(torch.tensor([len(w) for w in waves]))
        lens = torch.clamp(lens, max=mapped.shape[1])
        hid = out.hidden_states[-1]
        mask = (torch.arange(hid.shape[1])[None, :] < lens[:, None]).float()[..., None]
        emb = (hid * mask).sum(1) / mask.sum(1).clamp(min=1)
        return TeacherOutput(mapped, lens, emb)
