"""``latentflow-prepare``: convert your own data ahead of training.

    latentflow-prepare midi DIR OUT.npz [--step-beats 0.5] [--split 0.8 0.1 0.1] [--seed 0]

``midi``: every MIDI file under DIR as piano rolls, split by file, in the ``.npz`` layout of
the built-in music datasets; train on it with ``data=midi_folder data.path=OUT.npz``
(``latentflow.data.midi_folder``: the same conversion ``data=midi_folder`` caches itself).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from latentflow.data.download import DataError


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="latentflow-prepare", description=__doc__.splitlines()[0]
    )
    sub = parser.add_subparsers(dest="what", required=True)
    midi = sub.add_parser("midi", help="a folder of MIDI files -> an .npz of piano rolls")
    midi.add_argument("folder", type=Path)
    midi.add_argument("out", type=Path)
    midi.add_argument("--step-beats", type=float, default=0.5, help="beats per step (0.5)")
    midi.add_argument("--split", type=float, nargs=3, default=(0.8, 0.1, 0.1))
    midi.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="latentflow-prepare: %(message)s")
    from latentflow.data import music
    from latentflow.data.midi_folder import convert_folder, write_cache

    try:
        if args.out.suffix != ".npz":
            raise DataError(f"OUT must end in .npz, got {args.out}")
        arrays, report = convert_folder(args.folder, args.step_beats, args.split, args.seed)
        write_cache(args.out, arrays)
        splits = music.read_npz(args.out)  # what training will read
    except (DataError, ValueError, OSError) as err:
        print(f"latentflow-prepare: error: {err}", file=sys.stderr)
        return 2
    summary = {name: len(d) for name, d in splits.items()}
    summary["files_used"], summary["skipped"] = report["used"], len(report["skipped"])
    summary["notes_outside_88_keys"], summary["out"] = report["outside"], str(args.out)
    print(json.dumps(summary))
    return 0


def cli() -> None:
    raise SystemExit(main())


if __name__ == "__main__":
    cli()
