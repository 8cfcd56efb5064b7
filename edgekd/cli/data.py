"""`edgekd import | synth | lm`: data in (manifests, a synthetic corpus, a word LM)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edgekd.cli._common import options, OutDir, say, Seed


def import_cmd(
    src: Annotated[Path, typer.Argument(help="Audio folder, Kaldi dir (wav.scp+text), CSV/TSV, or manifest.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Manifest to write (.jsonl or .jsonl.gz).")],
    domain: Annotated[Optional[str], typer.Option(help="Domain tag for every utterance.")] = None,
    check: Annotated[bool, typer.Option(help="Decode every file; quarantine bad ones in rejected.jsonl.")] = True,
):
    """Build an utterance manifest from a folder, Kaldi dir or CSV/TSV.

    Usage: edgekd import data/my_audio --out data/my.jsonl --domain target
    """
    from edgekd.audio import Quarantine, check_manifest
    from edgekd.importers import import_any
    from edgekd.manifest import write_manifest

    utts = import_any(src, domain)
    n_bad = 0
    if check:
        q = Quarantine(out.parent / "rejected.jsonl", stage="import")
        utts, n_bad = check_manifest(utts, q)
    write_manifest(out, utts)
    say(f"{out}: {len(utts)} utterances" + (f", {n_bad} rejected -> {out.parent / 'rejected.jsonl'}" if n_bad else ""))


def synth(
    out: OutDir,
    hours_source: Annotated[float, typer.Option(help="Hours of labeled source-domain speech.")] = 0.2,
    hours_target: Annotated[float, typer.Option(help="Hours of drifted target-domain speech.")] = 0.2,
    drift: Annotated[float, typer.Option(help="Target drift strength: 0 none, 1 default, >1 harsher.")] = 1.0,
    piper_fraction: Annotated[float, typer.Option(help="Share of utterances spoken by piper.")] = 0.3,
    source_drift: Annotated[float, typer.Option(help="Mild drift on half of source train (augmentation).")] = 0.0,
    text: Annotated[str, typer.Option(help="template (the demo's sentences) or open (open-vocabulary text).")] = "template",
    engines: Annotated[str, typer.Option(help="Comma-separated engines: espeak, piper, flite.")] = "espeak,piper",
    flite_fraction: Annotated[float, typer.Option(help="Share of utterances spoken by flite.")] = 0.0,
    held_out_voice: Annotated[Optional[list[str]], typer.Option(help="Voice never trained on, e.g. flite:rms (repeat).")] = None,
    hours_unseen: Annotated[float, typer.Option(help="Hours of source/test_unseen in the held-out voices.")] = 0.0,
    speed_perturb: Annotated[bool, typer.Option(help="Source train speed x0.9/1.0/1.1.")] = False,
    pitch_perturb: Annotated[float, typer.Option(help="Share of source train pitch-shifted 1-3 semitones.")] = 0.0,
    codec_fraction: Annotated[float, typer.Option(help="Share of source train through a codec/bandwidth effect.")] = 0.0,
    dev_fraction: Annotated[float, typer.Option(help="Share of each domain's hours for dev.")] = 0.05,
    test_fraction: Annotated[float, typer.Option(help="Share of each domain's hours for test.")] = 0.1,
    seed: Seed = 0,
    workers: Annotated[int, typer.Option(help="Processes.")] = 2,
):
    """Synthesize a reproducible source/target speech corpus (espeak-ng, piper, flite).

    Usage: edgekd synth --out data/demo --hours-source 0.2 --hours-target 0.2 --seed 0
    """
    from edgekd.synth import SynthOptions, run_synth

    opts = options(SynthOptions, seed=seed, hours_source=hours_source, hours_target=hours_target, drift=drift,
                            piper_fraction=piper_fraction, source_drift=source_drift, workers=workers, text=text,
                            engines=tuple(e.strip() for e in engines.split(",") if e.strip()),
                            flite_fraction=flite_fraction, held_out_voices=tuple(held_out_voice or ()),
                            hours_unseen=hours_unseen, speed_perturb=speed_perturb, pitch_perturb=pitch_perturb,
                            codec_fraction=codec_fraction, dev_fraction=dev_fraction, test_fraction=test_fraction)
    say(str(run_synth(opts, out)))


def lm_cmd(
    manifests: Annotated[list[Path], typer.Argument(help="Labeled manifests or .txt files whose text trains the LM.")],
    out: Annotated[Path, typer.Option(help="ARPA file to write.")],
    order: Annotated[int, typer.Option(help="n-gram order.")] = 3,
    prune_from: Annotated[int, typer.Option(help="Drop n-grams of this order and above seen once (0 = keep all).")] = 0,
):
    """Build a word n-gram LM (ARPA) from transcripts (manifests or .txt, one sentence a line).

    Usage: edgekd lm data/corpus/source/train.jsonl --out models/teacher/lm.arpa
    """
    from edgekd.lm import run_lm

    r = run_lm(manifests, out, order=order, prune_from=prune_from)
    say(f"{r['order']}-gram LM over {r['sentences']} sentences, {r['vocab']} words -> {out} ({r['bytes'] / 1e6:.1f} MB)")


tokens_cli = typer.Typer(no_args_is_help=True, help="Token sets: sentencepiece subwords for CTC models.")


@tokens_cli.command("train")
def tokens_train(
    text: Annotated[list[Path], typer.Option(help="Labeled manifests or .txt files (one sentence a line); repeatable.")],
    out: Annotated[Path, typer.Option(help="Sentencepiece model to write (.model); tokens.txt goes beside it.")],
    vocab: Annotated[int, typer.Option(help="Pieces in the set, the blank <blk> (id 0) and <unk> included.")] = 256,
    model_type: Annotated[str, typer.Option(help="bpe or unigram.")] = "bpe",
):
    """Train a sentencepiece token set for CTC (blank at id 0) from transcripts.

    Usage: edgekd tokens train --text data/corpus/source/train.jsonl --vocab 256 --out runs/tokens/spm256.model
    """
    from edgekd.tokens import run_tokens

    r = run_tokens(text, vocab, out, model_type)
    say(f"{r['vocab']} {model_type} tokens from {r['sentences']} sentences -> {r['model']} + {r['tokens_txt']}")
