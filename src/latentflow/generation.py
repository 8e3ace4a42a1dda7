"""Generation from a trained model: drawing in batches, and writing text or MIDI files.

What ``latentflow-sample`` writes (``latentflow.run.sample``):

* text: ``samples.txt``, one decoded sentence per line (word boundaries restored);
* music: ``midi/sample_000.mid`` ... (standard MIDI files), ``png/sample_000.png`` (piano
  rolls) and ``rolls.npz`` (``rolls`` [N, T_max, 88] uint8, zero past each length; ``lengths``
  [N]);
* music with ``audio=on``: ``audio/sample_000.wav`` ... (``latentflow.audio``: FluidSynth, the
  General MIDI soundfont), each exactly as long as its roll;
* always: ``samples.json`` (settings, lengths, log p(z | T) per sample for flow models, time).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from torch import Tensor, nn


@torch.inference_mode()
def generate(
    net: nn.Module,
    lengths: Tensor,
    batch_size: int = 64,
    temperature: float = 1.0,
    argmax: bool = False,
    generator: torch.Generator | None = None,
) -> tuple[list[Tensor], Tensor | None]:
    """Sample one sequence per entry of ``lengths`` [N], ``batch_size`` at a time, in order.

    Returns the sequences (CPU tensors, ``[T_i]`` ids or ``[T_i, 88]`` rolls) and, for flow
    models, log p(z | T) of each latent sample ([N], float64), else None.
    """
    from tqdm.auto import tqdm

    net.eval()
    xs: list[Tensor] = []
    log_pz: list[Tensor] = []
    starts = range(0, len(lengths), batch_size)
    bar = tqdm(total=len(lengths), unit="seq", desc="sampling", disable=len(starts) < 2)
    for start in starts:
        chunk = lengths[start : start + batch_size]
        out = net.sample(
            lengths=chunk, temperature=temperature, argmax=argmax, generator=generator
        )
        x = out["x"].cpu()
        xs.extend(x[i, : int(T)] for i, T in enumerate(chunk))
        if "log_pz" in out:
            log_pz.append(out["log_pz"].double().cpu())
        bar.update(len(chunk))
    bar.close()
    return xs, (torch.cat(log_pz) if log_pz else None)


def draw_lengths(
    net: nn.Module, num_samples: int, length: int | None, generator: torch.Generator
) -> Tensor:
    """``num_samples`` lengths: all ``length``, or (None) drawn from the model's p(T)."""
    if length is None:
        return net.length_distribution.sample(num_samples, generator=generator).cpu()
    return torch.full((num_samples,), int(length), dtype=torch.long)


def write_text(
    xs: list[Tensor], vocab: list[str], out_dir: Path, num_print: int, data_config: Any = None
) -> list[str]:
    """samples.txt in the data's own tokenization: one sample per line, or, when samples
    span lines (paragraphs), separated by blank lines."""
    from latentflow.data.vocab import text_decoder

    decode = text_decoder(vocab, data_config)
    texts = [decode(x) for x in xs]
    separator = "\n\n" if any("\n" in t for t in texts) else "\n"
    (out_dir / "samples.txt").write_text(separator.join(texts) + "\n", encoding="utf-8")
    for i, text in enumerate(texts[:num_print]):
        print(f"[{i}] T={len(xs[i])}: {text}")
    return texts


def audio_settings(cfg: DictConfig, step_beats: float = 0.5) -> Any:
    """The ``AudioSettings`` of a sample config (None when ``audio=off``), checked."""
    audio = cfg.get("audio") or {}
    if not audio.get("enabled"):
        return None
    from latentflow.audio import AudioSettings, check_audio

    program = audio.get("program")
    settings = AudioSettings(
        format=str(audio.get("format", "wav")),
        sample_rate=audio.get("sample_rate", 44100),
        soundfont=audio.get("soundfont"),
        tempo_bpm=float(cfg.midi.tempo_bpm),
        step_beats=float(step_beats),
        velocity=int(cfg.midi.velocity),
        program=int(cfg.midi.program if program is None else program),
    )
    return check_audio(settings)


def write_audio_files(rolls: list[np.ndarray], names: list[str], settings: Any, out_dir: Path):
    """``audio/<name>.<format>`` for every roll; the file names. A roll with no note is a
    silent file of its length, said once for all of them."""
    from latentflow.audio import render_roll

    files, silent = [], []
    for roll, name in zip(rolls, names, strict=True):
        path = out_dir / "audio" / f"{name}{settings.suffix}"
        if not render_roll(roll, path, settings):
            silent.append(name)
        files.append(f"audio/{path.name}")
    if silent:
        warnings.warn(
            f"{len(silent)} sample(s) have no note; their audio is silence of their length: "
            + ", ".join(silent),
            stacklevel=2,
        )
    return files


def write_music(
    xs: list[Tensor], midi_cfg: DictConfig, step_beats: float, out_dir: Path, num_print: int
) -> list[str]:
    from latentflow.midi import plot_roll, roll_to_midi

    (out_dir / "midi").mkdir(exist_ok=True)
    if midi_cfg.plot:
        (out_dir / "png").mkdir(exist_ok=True)
    width = max(3, len(str(len(xs) - 1)))
    rolls = np.zeros((len(xs), max(len(x) for x in xs), xs[0].shape[-1]), dtype=np.uint8)
    names = []
    for i, x in enumerate(xs):
        roll = x.numpy() > 0.5  # [T, 88]
        rolls[i, : len(roll)] = roll
        name = f"sample_{i:0{width}d}"
        roll_to_midi(
            roll,
            out_dir / "midi" / f"{name}.mid",
            tempo_bpm=midi_cfg.tempo_bpm,
            step_beats=step_beats,
            velocity=midi_cfg.velocity,
            program=midi_cfg.program,
        )
        if midi_cfg.plot:
            plot_roll(roll, out_dir / "png" / f"{name}.png", f"{name} (T={len(roll)})", step_beats)
        if i < num_print:
            print(f"[{i}] T={len(roll)}, {int(roll.sum())} active notes -> midi/{name}.mid")
        names.append(name)
    lengths = np.array([len(x) for x in xs], dtype=np.int64)
    np.savez_compressed(out_dir / "rolls.npz", rolls=rolls, lengths=lengths)
    return names


def write_samples(xs: list[Tensor], hp: Any, cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    """Write the samples in the data's own form; the ``samples.json`` entries about them."""
    if hp["data"]["kind"] == "text":
        texts = write_text(xs, list(hp["vocab"]), out_dir, cfg.num_print, hp.get("data_config"))
        return {"samples": texts, "files": ["samples.txt"]}
    from latentflow.midi import default_step_beats

    data_config = hp.get("data_config") or {}
    step_beats = cfg.midi.step_beats or data_config.get("step_beats")  # a midi_folder's own
    step_beats = step_beats or default_step_beats(data_config.get("name"))
    settings = audio_settings(cfg, step_beats)
    names = write_music(xs, cfg.midi, step_beats, out_dir, cfg.num_print)
    files = ["rolls.npz", *(f"midi/{n}.mid" for n in names)]
    if settings is not None:
        rolls = [x.numpy() for x in xs]
        files += write_audio_files(rolls, names, settings, out_dir)
    return {"step_beats": step_beats, "files": files}
