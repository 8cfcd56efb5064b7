"""Which espeak-ng voice variants draw from espeak's own random generator (seeded from the clock at
start-up before edgekd seeded it per utterance): each variant speaks one sentence in two forked
children of one engine whose generator was set to two different states, libc rand() seeded alike,
as edgekd did before commit b3b4d8c. A variant whose two outputs differ depended on the generator.

Usage: python3 scripts/espeak_random_variants.py
"""

import ctypes
import os

import numpy as np

from edgekd.synth import engines


def _old_synth(eng: engines.Espeak, voice: engines.Voice, seed: int) -> np.ndarray:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        ctypes.CDLL(None).srand(ctypes.c_uint(seed))  # what edgekd seeded before the fix
        data = eng._synth("what joy there is in living", voice).tobytes()
        with os.fdopen(w, "wb") as f:
            f.write(data)
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    return np.frombuffer(data, np.float32)


def main() -> None:
    eng = engines.Espeak()
    affected = []
    for v in engines.ESPEAK_VARIANTS:
        voice = engines.Voice("espeak", f"en-us+{v}", 150, 50, 50)
        outs = []
        for state in (1, 2):
            eng.lib.espeak_ng_SetRandSeed(ctypes.c_long(state))  # two start-up clocks
            outs.append(_old_synth(eng, voice, 5))
        if len(outs[0]) != len(outs[1]) or not np.array_equal(*outs):
            affected.append(v)
    train = [v for v in engines.ESPEAK_VARIANTS if v not in engines.HELD_OUT_VARIANTS]
    print(f"{len(affected)} of {len(engines.ESPEAK_VARIANTS)} variants ({sum(v in train for v in affected)} of the "
          f"{len(train)} training variants) depended on the clock-seeded generator: {', '.join(affected)}")


if __name__ == "__main__":
    main()
