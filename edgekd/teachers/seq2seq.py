"""Sequence-to-sequence ASR teachers (Whisper, or any transformers `AutoModelForSpeechSeq2Seq`).

`hf:<hub id or local dir>` whose config says `is_encoder_decoder` loads here instead of the CTC
adapter. Such a model has no frame posteriors to distil from: it gives **hard labels** — its
transcript, normalised onto edgekd's alphabet (`tokens.normalize_text`) — and a confidence, the
geometric mean of its token probabilities (exp of the mean token log-prob, end-of-text included),
which pseudo-labeling routes on. Beside CTC teachers it supplies the hard label of a mixed
ensemble (their soft targets, its transcript as the CTC target).

Decoding is greedy, one token at a time with the decoder's key/value cache, from the prompt
the model's generation config describes (Whisper: start of transcript, language, transcribe, no
timestamps). It is written here rather than calling `generate()`, whose machinery took minutes
per call on this box for a 20-token tiny model (transformers 5.x); this loop takes milliseconds.
"""

from __future__ import annotations

import numpy as np
import torch

from edgekd.errors import EdgekdError
from edgekd.tokens import normalize_text


class Seq2SeqTeacher:
    """Hard labels + confidence from a transformers speech seq2seq model."""

    kind = "seq2seq"

    def __init__(self, id_or_dir: str, language: str = "en", max_new_tokens: int = 128):
        try:
            from transformers import AutoModelForSpeechSeq2Seq, AutoProcessor
        except ImportError as e:
            raise EdgekdError(f"HF teachers need `pip install 'edgekd[hf]'` ({e})") from None
        try:
            self.processor = AutoProcessor.from_pretrained(id_or_dir)
            self.model = AutoModelForSpeechSeq2Seq.from_pretrained(id_or_dir).eval()
        except (OSError, ValueError) as e:
            raise EdgekdError(f"cannot load HF seq2seq model {id_or_dir!r}: {e}".splitlines()[0]) from None
        self.name = str(id_or_dir).rstrip("/").split("/")[-1]
        self.sample_rate = int(self.processor.feature_extractor.sampling_rate)
        self.featurizer, self.tokens, self.sentencepiece = None, (), None  # no frames, no CTC token set
        self.prompt = self._prompt(language)
        limit = getattr(self.model.config, "max_target_positions", None)  # the decoder's position table (Whisper: 448)
        self.max_new_tokens = min(max_new_tokens, limit - len(self.prompt)) if limit else max_new_tokens
        gc = self.model.generation_config
        self.eos = gc.eos_token_id[0] if isinstance(gc.eos_token_id, (list, tuple)) else gc.eos_token_id
        # what generate() would never emit: Whisper lists non-speech symbols, and bars end-of-text first
        self.suppress = list(getattr(gc, "suppress_tokens", None) or [])
        self.begin_suppress = list(getattr(gc, "begin_suppress_tokens", None) or [])

    def _prompt(self, language: str) -> list[int]:
        gc, cfg = self.model.generation_config, self.model.config
        start = gc.decoder_start_token_id if gc.decoder_start_token_id is not None else cfg.decoder_start_token_id
        if start is None:
            raise EdgekdError(f"HF seq2seq model {self.name}: no decoder_start_token_id in its config")
        ids = [int(start)]
        if getattr(gc, "is_multilingual", False):  # Whisper multilingual: <|en|><|transcribe|>
            lang = (getattr(gc, "lang_to_id", None) or {}).get(f"<|{language}|>")
            task = (getattr(gc, "task_to_id", None) or {}).get("transcribe")
            if lang is None or task is None:
                raise EdgekdError(f"HF seq2seq model {self.name}: no language token <|{language}|> or transcribe task")
            ids += [int(lang), int(task)]
        if getattr(gc, "no_timestamps_token_id", None) is not None:
            ids.append(int(gc.no_timestamps_token_id))
        return ids

    @torch.no_grad()
    def transcribe(self, waves: list[np.ndarray]) -> list[tuple[str, float]]:
        """Mono float32 waves at `sample_rate` -> [(normalised transcript, confidence in [0, 1])]."""
        feats = self.processor.feature_extractor(waves, sampling_rate=self.sample_rate, return_tensors="pt")
        enc = self.model.get_encoder()(feats["input_features"])
        b = len(waves)
        ids = torch.tensor([self.prompt] * b)
        out: list[list[int]] = [[] for _ in range(b)]
        logp = torch.zeros(b, dtype=torch.float64)
        done = torch.zeros(b, dtype=torch.bool)
        past, step_in = None, ids
        for _ in range(self.max_new_tokens):
            o = self.model(encoder_outputs=enc, decoder_input_ids=step_in, past_key_values=past, use_cache=True)
            lp = o.logits[:, -1].float().log_softmax(-1)
            banned = self.suppress + (self.begin_suppress if past is None else [])
            nxt = lp.index_fill(1, torch.tensor(banned, dtype=torch.long), -float("inf")).argmax(-1) if banned else lp.argmax(-1)
            for i in range(b):
                if not done[i]:
                    out[i].append(int(nxt[i]))
                    logp[i] += float(lp[i, nxt[i]])
            done |= nxt == self.eos
            if done.all():
                break
            past, step_in = o.past_key_values, nxt[:, None]
        texts = self.processor.tokenizer.batch_decode([[t for t in o_ if t != self.eos] for o_ in out],
                                                      skip_special_tokens=True)
        return [(normalize_text(t), float(np.exp(lp_ / max(len(o_), 1)))) for t, lp_, o_ in zip(texts, logp.tolist(), out)]
