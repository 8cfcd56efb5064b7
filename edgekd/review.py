"""Human review of doubtful audio through Label Studio: export tasks, import answers by majority.

Export (`export_tasks`): Label Studio import JSON — one task per utterance with `data.audio`
(a URL or path the Label Studio server can serve), `data.utt_id`, and a `predictions` entry
holding the teacher's transcript as a `textarea` result with `score` = confidence — plus the
labeling config XML that matches it (`from_name="transcription"`, `to_name="audio"`).

Import (`import_annotations`): a Label Studio export JSON (list of tasks, each with
`annotations[].result[]` textarea values). Each annotator's text is normalised to the token set;
the majority text wins. Tie rule: among tied texts, the one with the lowest mean WER against
all the task's answers (the most central answer) wins, then the earliest submitted. Cancelled
annotations and empty answers are ignored. Agreement statistics: the fraction of tasks whose
answers are all identical and the mean pairwise WER between annotators. A malformed task is
reported with its id and skipped; every good task is kept.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from pathlib import Path
from typing import Any

from edgekd.errors import EdgekdError
from edgekd.manifest import Utterance, read_manifest, write_manifest
from edgekd.tokens import normalize_text

LABEL_CONFIG = """<View>
  <Header value="Type exactly what is said (lowercase words; no punctuation needed)"/>
  <Audio name="audio" value="$audio" hotkey="space"/>
  <TextArea name="transcription" toName="audio" rows="3" editable="true" maxSubmissions="1"
            showSubmitButton="false" placeholder="transcript"/>
</View>
"""


def export_tasks(review_manifest: str | Path, labels_jsonl: str | Path | None, out_dir: str | Path,
                 audio_url_prefix: str = "", model_version: str = "edgekd-teacher") -> dict[str, Path]:
    """Write `tasks.json` (Label Studio import) and `label_config.xml`; returns their paths.

    `audio_url_prefix` replaces the audio folder in paths (e.g. `/data/local-files/?d=` for
    Label Studio's local file serving); empty keeps absolute paths.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    utts = read_manifest(review_manifest)
    labels = {}
    if labels_jsonl:
        for line in Path(labels_jsonl).read_text(encoding="utf-8").splitlines():
            if line.strip():
                d = json.loads(line)
                labels[d["id"]] = d
    tasks = []
    for u in utts:
        lab = labels.get(u.id, {})
        audio = audio_url_prefix + Path(u.audio).name if audio_url_prefix else u.audio
        task: dict[str, Any] = {"data": {"audio": audio, "utt_id": u.id}}
        if lab.get("text") is not None:
            task["predictions"] = [{
                "model_version": model_version, "score": float(lab.get("confidence", 0.0)),
                "result": [{"from_name": "transcription", "to_name": "audio", "type": "textarea",
                            "value": {"text": [lab["text"]]}}]}]
        tasks.append(task)
    (out / "tasks.json").write_text(json.dumps(tasks, indent=1), encoding="utf-8")
    (out / "label_config.xml").write_text(LABEL_CONFIG, encoding="utf-8")
    return {"tasks": out / "tasks.json", "config": out / "label_config.xml"}


def _answers(task: dict) -> list[str]:
    """Normalised textarea answers of the task's non-cancelled annotations, in submission order."""
    anns = task.get("annotations")
    if not isinstance(anns, list):
        raise ValueError("no 'annotations' list")
    anns = sorted(anns, key=lambda a: str(a.get("created_at", "")) if isinstance(a, dict) else "")
    out = []
    for a in anns:
        if not isinstance(a, dict):
            raise ValueError("an annotation is not an object")
        if a.get("was_cancelled"):
            continue
        texts = [t for r in a.get("result", []) if isinstance(r, dict) and r.get("type") == "textarea"
                 for t in r.get("value", {}).get("text", [])]
        text = normalize_text(" ".join(texts))
        if text:
            out.append(text)
    return out


def majority(answers: list[str]) -> str:
    """Most frequent answer; ties -> most central (lowest mean WER to all answers), then earliest."""
    import jiwer

    counts = Counter(answers)
    top = max(counts.values())
    tied = [a for a in dict.fromkeys(answers) if counts[a] == top]  # keeps submission order
    if len(tied) == 1:
        return tied[0]
    return min(tied, key=lambda c: sum(jiwer.wer(a, c) for a in answers) / len(answers))


def import_annotations(export_json: str | Path, audio_manifest: str | Path, out_dir: str | Path) -> dict[str, Any]:
    """Label Studio export -> `labeled.jsonl` (human labels), `import_errors.jsonl`, `agreement.json`."""
    import jiwer

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    try:
        tasks = json.loads(Path(export_json).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise EdgekdError(f"{export_json}: not a Label Studio export JSON ({e})") from None
    if not isinstance(tasks, list):
        raise EdgekdError(f"{export_json}: expected a list of tasks, got {type(tasks).__name__}")
    by_id = {u.id: u for u in read_manifest(audio_manifest)}
    labeled, errors, unanimous, pair_wers, n_answers = [], [], 0, [], []
    for n, task in enumerate(tasks):
        tid = task.get("id", f"#{n}") if isinstance(task, dict) else f"#{n}"
        try:
            if not isinstance(task, dict):
                raise ValueError("task is not an object")
            uid = (task.get("data") or {}).get("utt_id")
            if uid not in by_id:
                raise ValueError(f"data.utt_id {uid!r} is not in {Path(audio_manifest).name}")
            answers = _answers(task)
            if not answers:
                raise ValueError("no usable annotation (all empty or cancelled)")
        except (ValueError, AttributeError, TypeError) as e:
            errors.append({"task": tid, "error": str(e)})
            continue
        n_answers.append(len(answers))
        unanimous += len(set(answers)) == 1
        pair_wers += [jiwer.wer(a, b) for a, b in itertools.combinations(answers, 2)]
        u = by_id[uid]
        labeled.append(Utterance(id=u.id, audio=u.audio, duration=u.duration, text=majority(answers),
                                 domain=u.domain, tags={**u.tags, "annotators": len(answers), "source": "human"}))
    write_manifest(out / "labeled.jsonl", labeled)
    (out / "import_errors.jsonl").write_text("".join(json.dumps(e) + "\n" for e in errors), encoding="utf-8")
    stats = {"tasks": len(tasks), "imported": len(labeled), "errors": len(errors),
             "fraction_unanimous": round(unanimous / max(len(labeled), 1), 4),
             "mean_pairwise_wer": round(sum(pair_wers) / len(pair_wers), 4) if pair_wers else None,
             "mean_annotators": round(sum(n_answers) / max(len(n_answers), 1), 2)}
    (out / "agreement.json").write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
    return stats
