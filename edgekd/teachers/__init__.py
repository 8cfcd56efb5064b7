"""Teachers: anything that turns waveforms into per-frame CTC posteriors.

One interface (`base.Teacher`: name, tokens, frame_rate, sample_rate, featurizer, __call__) for
the project's own conformer checkpoints (`conformer.py`) and external models (Hugging Face CTC
models via `hf:<hub id or local dir>`, `hf.py`; seq2seq models such as Whisper, also `hf:`, which
give hard labels and a confidence instead of posteriors, `seq2seq.py`; ONNX CTC models in sherpa-onnx's contracts via
`onnx:<dir or model.onnx>`, `onnx.py`), so pseudo-labeling and distillation never care
which family a teacher is. A new family is a module here plus a prefix in `load_teacher`.
"""

from __future__ import annotations

from pathlib import Path

from edgekd.errors import EdgekdError
from edgekd.teachers.base import Teacher, TeacherOutput
from edgekd.teachers.conformer import ConformerTeacher

__all__ = ["SHIPPED_TEACHER", "ConformerTeacher", "Teacher", "TeacherOutput", "load_teacher"]

# the teacher shipped in the repository (weights + model card), wherever edgekd is started from
SHIPPED_TEACHER = Path(__file__).resolve().parents[2] / "models" / "teacher" / "teacher.safetensors"


def load_teacher(spec: str | Path) -> Teacher:
    """`path/to/model.safetensors` (edgekd checkpoint), `hf:<hub id or local dir>` or `onnx:<dir or .onnx>`."""
    spec = str(spec)
    if spec.startswith("onnx:"):
        from edgekd.teachers.onnx import OnnxCTCTeacher

        return OnnxCTCTeacher(spec[5:])
    if spec.startswith("hf:"):
        try:
            from edgekd.teachers.hf import HFCTCTeacher, is_seq2seq
        except ImportError as e:
            raise EdgekdError(f"teacher {spec}: the Hugging Face adapter needs `pip install 'edgekd[hf]'` ({e})") from None
        if is_seq2seq(spec[3:]):  # Whisper & co: hard labels + confidence, no frame posteriors
            from edgekd.teachers.seq2seq import Seq2SeqTeacher

            return Seq2SeqTeacher(spec[3:])
        return HFCTCTeacher(spec[3:])
    if not Path(spec).exists():
        raise EdgekdError(f"teacher {spec}: no such checkpoint (use a .safetensors path or hf:<id or dir>)")
    return ConformerTeacher(spec)
