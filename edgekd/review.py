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

from edgekd.atomic import atomic_write
from edgekd.errors import EdgekdError, ManifestError
from edgekd.manifest import Utterance, read_manifest, write_manifest
from edgekd.records import ReviewAnswer, ReviewTask, read_pseudolabels
from edgekd.tokens import normalize_text

LABEL_CONFIG = """<View>
  <Header value="Type exactly what is said (lowercase words; no punctuation needed)"/>
  <Audio name="audio" value="$audio" hotkey="space"/>
  <TextArea name="transcription" toName="audio" rows="3" editable="true" maxSubmissions="1"
            showSubmitButton="false" placeholder="transcript"/>
</View>
"""


def export_tasks(review_manifest: str | Path, labels_jsonl: str | Path | None, out_dir: str | Path,
                 audio_url_prefix: str = "", model_version: str = "edgekd-teacher",
                 audit_ids: frozenset[str] | set[str] = frozenset()) -> dict[str, Path]:
    """Write `tasks.json` (Label Studio import) and `label_config.xml`; returns their paths.

    `labels_jsonl` is pseudolabel's `labels.jsonl` (PseudoLabel records): the teacher's text and
    confidence become each task's prediction. `audio_url_prefix` replaces the audio folder in
    paths (e.g. `/data/local-files/?d=` for Label Studio's local file serving); empty keeps
    absolute paths. Utterances in `audit_ids` are random audits of auto-accepted labels: their
    tasks carry `data.audit: true` (Label Studio can filter on it; annotators see the same task).
    """
    out = Path(out_dir)
    labels = {l.id: l for l in read_pseudolabels(labels_jsonl)} if labels_jsonl else {}
    tasks = []
    for u in read_manifest(review_manifest):
        lab = labels.get(u.id)
        task = ReviewTask(utt_id=u.id, audio=audio_url_prefix + Path(u.audio).name if audio_url_prefix else u.audio,
                          prediction=lab.text if lab else None, score=float(lab.confidence) if lab else 0.0,
                          audit=u.id in audit_ids)
        task.validate()
        tasks.append(_to_label_studio(task, model_version))
    atomic_write(out / "tasks.json", json.dumps(tasks, indent=1))
    atomic_write(out / "label_config.xml", LABEL_CONFIG)
    return {"tasks": out / "tasks.json", "config": out / "label_config.xml"}


def _to_label_studio(task: ReviewTask, model_version: str) -> dict[str, Any]:
    """A task in Label Studio's import form; the prediction names the config's TextArea and Audio."""
    d: dict[str, Any] = {"data": {"audio": task.audio, "utt_id": task.utt_id, **({"audit": True} if task.audit else {})}}
    if task.prediction is not None:
        d["predictions"] = [{
            "model_version": model_version, "score": task.score,
            "result": [{"from_name": "transcription", "to_name": "audio", "type": "textarea",
                        "value": {"text": [task.prediction]}}]}]
    return d


def _answers(task: dict, utt_id: str) -> list[ReviewAnswer]:
    """The task's non-cancelled, non-empty textarea answers (normalised), in submission order."""
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
        texts = [t for r in a.get("result") or [] if isinstance(r, dict) and r.get("type") == "textarea"
                 for t in _texts(r.get("value"))]
        text = normalize_text(" ".join(texts))
        if text:
            ans = ReviewAnswer(utt_id=utt_id, annotator=str(a.get("completed_by", a.get("id", ""))), text=text,
                               created_at=str(a.get("created_at", "")))
            ans.validate()
            out.append(ans)
    return out


def _texts(value) -> list[str]:
    """A textarea result's `value.text`: a list of strings (Label Studio's form); a bare string
    is one answer (iterating it would split it into letters); anything else is an error."""
    text = value.get("text", []) if isinstance(value, dict) else None
    if isinstance(text, str):
        return [text]
    if not isinstance(text, list) or not all(isinstance(t, str) for t in text):
        raise ValueError(f"value.text must be a list of strings, got {type(text).__name__}")
    return text


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
    try:
        raw = Path(export_json).read_bytes()
    except OSError as e:
        raise EdgekdError(f"{export_json}: cannot read ({e.strerror or e})") from None
    try:
        tasks = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as e:
        raise EdgekdError(f"{export_json}: not UTF-8 (byte {raw[e.start]:#x} at {e.start}); "
                          f"export it again from Label Studio or re-save it as UTF-8") from None
    except (json.JSONDecodeError, RecursionError) as e:
        why = e.msg if isinstance(e, json.JSONDecodeError) else "nested too deeply"
        raise EdgekdError(f"{export_json}: not a Label Studio export JSON ({why})") from None
    if not isinstance(tasks, list):
        raise EdgekdError(f"{export_json}: expected a list of tasks, got {type(tasks).__name__}")
    by_id = {u.id: u for u in read_manifest(audio_manifest)}
    labeled, errors, unanimous, pair_wers, n_answers = [], [], 0, [], []
    done: dict[str, object] = {}  # utt_id -> task that labeled it: one label per utterance
    for n, task in enumerate(tasks):
        tid = task.get("id", f"#{n}") if isinstance(task, dict) else f"#{n}"
        try:
            if not isinstance(task, dict):
                raise ValueError("task is not an object")
            data = task.get("data")
            uid = data.get("utt_id") if isinstance(data, dict) else None
            if not isinstance(uid, str) or uid not in by_id:
                raise ValueError(f"data.utt_id {uid!r} is not in {Path(audio_manifest).name}")
            if uid in done:
                raise ValueError(f"utterance {uid} is already labeled by task {done[uid]}; merge or drop the duplicate task")
            answers = [a.text for a in _answers(task, uid)]
            if not answers:
                raise ValueError("no usable annotation (all empty or cancelled)")
        except (ValueError, AttributeError, TypeError, ManifestError) as e:  # a bad task is logged, not fatal
            errors.append({"task": tid, "error": str(e)})
            continue
        n_answers.append(len(answers))
        unanimous += len(set(answers)) == 1
        pair_wers += [jiwer.wer(a, b) for a, b in itertools.combinations(answers, 2)]
        u = by_id[uid]
        done[uid] = tid
        labeled.append(Utterance(id=u.id, audio=u.audio, duration=u.duration, text=majority(answers),
                                 domain=u.domain, tags={**u.tags, "annotators": len(answers), "source": "human"}))
    write_manifest(out / "labeled.jsonl", labeled)
    atomic_write(out / "import_errors.jsonl", "".join(json.dumps(e) + "\n" for e in errors))
    stats = {"tasks": len(tasks), "imported": len(labeled), "errors": len(errors),
             "fraction_unanimous": round(unanimous / max(len(labeled), 1), 4),
             "mean_pairwise_wer": round(sum(pair_wers) / len(pair_wers), 4) if pair_wers else None,
             "mean_annotators": round(sum(n_answers) / max(len(n_answers), 1), 2)}
    atomic_write(out / "agreement.json", json.dumps(stats, indent=2) + "\n")
    return stats
