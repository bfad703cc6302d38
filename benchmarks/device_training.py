"""The last section of ``device_check.py``: real training with the time left, then held-out figures.

pix2pix (coarse->fine) and pix2pixHD (fine->RGB) in their paper configurations at 512x1024 train on the
carried public tiles for a share of the time that is left each. The number of steps is planned from the
step time ``train_step.py`` measured in the same run, so the learning rate still decays to zero within the
time (a timer stops a run that falls behind, with a checkpoint). Then each checkpoint is compacted and:

- pix2pix turns every held-out coarse mask into fine masks with seeds 0 and 1: KS and KL of tissue
  fraction, boundary density and components against the held-out real fine masks, beside the coarse masks
  as they are; the share of pixels the seeds change; seconds per mask;
- pix2pixHD draws every held-out real fine mask: label IoU (the paper's luma > 204 rule applied to the
  tile gives back its mask?), mean tissue colour against the real tiles', seconds per tile.

Held-out rows go to OUT/heldout.jpg and the masks to OUT/heldout_masks.npz (FID is computed later, where
the Inception weights are: ``python benchmarks/device_check.py --fid OUT``). A compacted checkpoint small
enough to come back is copied to OUT in 15 MiB parts (``cat name.part* > name``).
"""
from __future__ import annotations

import math
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from trainer.checkpoint import compact_checkpoint
from trainer.data.masks import fine_mask, luma
from trainer.errors import Cancelled
from trainer.inference import Engine
from trainer.jobs import CancelToken
from trainer.metrics.distributions import STATISTICS, compare, mask_statistics
from trainer.train import train

THRESHOLD = 204  # the paper's H&E rule: luma above it is air
RESERVE = 45.0  # seconds kept for compacting, scoring and writing after both runs
PART = 15 * 2 ** 20
PARTS_MAX = 3  # report.md/json, log.txt, heldout.jpg and heldout_masks.npz leave 3 of the 8 files that come back


def train_and_score(report, s, device: torch.device, train_dir: Path, held_dir: Path, work: Path, out: Path,
                    clock) -> None:
    n_train = len(list((train_dir / "fine").glob("*.png")))
    measured = report.data.get("seconds_per_step", {})
    size = f"{s.real_size[0]}x{s.real_size[1]}"
    compact = {}
    for name, share in (("pix2pix", 0.5), ("pix2pixhd", 1.0)):  # pix2pixHD takes all that is left after pix2pix
        seconds = (clock.left() - RESERVE) * share
        if seconds < s.min_training / 2:
            report.check(f"real training {name}", False, f"skipped: {clock.left():.0f} s left")
            continue
        per_step = measured.get(f"{name} {size}", 0.0) or 1.0
        steps = s.real_steps or max(2, int(seconds / (per_step * 1.3)))  # loading data and checkpoints: ~30 %
        epochs = max(1, math.ceil(steps / n_train))
        config = s.config(name, train_dir, s.real_size, device, max_steps=steps, epochs=epochs, log_every=50)
        cancel = CancelToken()
        timer = threading.Timer(seconds * 1.25, cancel.cancel)
        timer.start()
        started = time.perf_counter()
        try:
            result = train(config, work / f"real-{name}", cancel=cancel)
            done, note = result.step, f"losses {', '.join(f'{k} {v:.3g}' for k, v in sorted(result.losses.items()))}"
        except Cancelled as exc:
            done, note = -1, f"stopped by the timer ({exc})"
        finally:
            timer.cancel()
        elapsed = time.perf_counter() - started
        ckpt = work / f"real-{name}" / "checkpoints" / "latest.safetensors"
        if not ckpt.is_file():
            report.check(f"real training {name}", False, f"no checkpoint after {elapsed:.0f} s; {note}")
            continue
        compact[name] = work / f"{name}_{size}.safetensors"
        sizes = compact_checkpoint(ckpt, compact[name])
        report.check(f"real training {name}", done == steps,
                     f"{steps} steps planned ({epochs} epochs of {n_train} patches at {size}, {per_step:.3f} s/step "
                     f"measured), {done if done >= 0 else 'fewer'} done in {elapsed:.0f} s; {note}; compacted "
                     f"{sizes['after'] / 2 ** 20:.0f} MiB", steps=steps, seconds=elapsed)
    masks: dict[str, np.ndarray] = {}
    if "pix2pix" in compact:
        score_masks(report, compact["pix2pix"], held_dir, device, masks, s.heldout_max, s.real_size, s.smoke)
    if "pix2pixhd" in compact:
        score_rgb(report, compact["pix2pixhd"], held_dir, device, s.heldout_max, s.real_size, s.smoke)
    if compact:
        montage(compact, held_dir, device, out / "heldout.jpg", s.real_size)
        bring_back(report, compact, out)
    if masks:
        np.savez_compressed(out / "heldout_masks.npz", **masks)


def read(path: Path, size: tuple[int, int], colour: bool = False) -> np.ndarray:
    """A held-out image at the trained size (the smoke run trains smaller than the patches are prepared)."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR if colour else cv2.IMREAD_GRAYSCALE)
    if image.shape[:2] != tuple(size):
        image = cv2.resize(image, size[::-1], interpolation=cv2.INTER_AREA if colour else cv2.INTER_NEAREST)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if colour else image


def score_masks(report, ckpt: Path, held: Path, device: torch.device, masks: dict, limit: int,
                size: tuple[int, int], smoke: bool) -> dict:
    """``smoke``: a few steps of a tiny network; the figures are computed but judge nothing (n/a)."""
    engine = Engine(ckpt, "none", device=str(device))
    paths = sorted((held / "coarse").glob("*.png"))[:limit]
    real = [read(held / "fine" / p.name, size) > 0 for p in paths]
    coarse = [read(p, size) for p in paths]
    started = time.perf_counter()
    seed0 = [engine.fine(c, 0) > 0 for c in coarse]
    per_mask = (time.perf_counter() - started) / max(1, len(coarse))
    seed1 = [engine.fine(c, 1) > 0 for c in coarse]
    stats = {name: _stats(ms) for name, ms in (("real", real), ("coarse", [c > 0 for c in coarse]), ("pix2pix", seed0))}
    lines = ["| set | N | KS | KL | KS boundary | KL boundary | KS components | KL components |",
             "|" + "---|" * 8]
    figures = {}
    for name in ("coarse", "pix2pix"):
        figures[name] = m = compare(stats["real"], stats[name])
        lines.append(f"| {name} | {len(coarse)} | {m['ks']:.3f} | {m['kl']:.3f} | {m['ks_boundary']:.3f} | "
                     f"{m['kl_boundary']:.3f} | {m['ks_components']:.3f} | {m['kl_components']:.3f} |")
    seeds = float(np.mean([(a != b).mean() for a, b in zip(seed0, seed1)]))
    changed = float(np.mean([(a != (c > 0)).mean() for a, c in zip(seed0, coarse)]))
    report.section("Held-out coarse->fine (pix2pix trained here)", "\n".join(lines) + (
        f"\n\nSeeds 0 and 1 differ in {100 * seeds:.1f} % of pixels; seed 0 changes {100 * changed:.1f} % of the "
        f"coarse mask; {1000 * per_mask:.0f} ms per mask. FID: `python benchmarks/device_check.py --fid OUT` "
        f"where the Inception weights are."))
    report.data["heldout_masks"] = {"pix2pix": figures["pix2pix"], "coarse": figures["coarse"], "seed_diff": seeds,
                                    "ms_per_mask": 1000 * per_mask}
    report.check("held-out pix2pix", None if smoke else figures["pix2pix"]["ks"] <= figures["coarse"]["ks"] + 0.05,
                 f"KS {figures['pix2pix']['ks']:.3f} (coarse as is {figures['coarse']['ks']:.3f}), "
                 f"seed difference {100 * seeds:.1f} %")
    masks.update({"names": np.array([p.stem for p in paths]), **_packed("real", real), **_packed("coarse", coarse),
                  **_packed("pix2pix_seed0", seed0), **_packed("pix2pix_seed1", seed1)})
    return figures


def _stats(masks: list[np.ndarray]) -> dict[str, np.ndarray]:
    per = [mask_statistics(m) for m in masks]
    return {k: np.array([p[k] for p in per]) for k in STATISTICS}


def _packed(name: str, masks: list[np.ndarray]) -> dict[str, np.ndarray]:
    stack = np.stack([np.asarray(m) > 0 for m in masks])
    return {name: np.packbits(stack, axis=-1), f"{name}_shape": np.array(stack.shape)}


def score_rgb(report, ckpt: Path, held: Path, device: torch.device, limit: int, size: tuple[int, int],
              smoke: bool) -> dict:
    engine = Engine("none", ckpt, device=str(device))
    paths = sorted((held / "fine").glob("*.png"))[:limit]
    ious, fake_colour, real_colour, started = [], [], [], time.perf_counter()
    for i, p in enumerate(paths):
        fine = read(p, size)
        rgb = engine.rgb(fine, i)
        back = fine_mask(luma(rgb), THRESHOLD) > 0
        union = np.logical_or(back, fine > 0).sum()
        ious.append(float(np.logical_and(back, fine > 0).sum() / union) if union else 1.0)
        real = read(held / "rgb" / p.name, size, colour=True)
        tissue = fine > 0
        if tissue.any():
            fake_colour.append(rgb[tissue].mean(0))
            real_colour.append(real[tissue].mean(0))
    per_tile = (time.perf_counter() - started) / max(1, len(paths))
    figures = {"label_iou_mean": float(np.mean(ious)), "label_iou_min": float(np.min(ious)),
               "tissue_rgb_generated": np.mean(fake_colour, 0).round(1).tolist() if fake_colour else None,
               "tissue_rgb_real": np.mean(real_colour, 0).round(1).tolist() if real_colour else None,
               "ms_per_tile": 1000 * per_tile}
    report.section("Held-out fine->RGB (pix2pixHD trained here)",
                   f"{len(paths)} held-out fine masks: label IoU (luma > {THRESHOLD} rule) mean "
                   f"{figures['label_iou_mean']:.3f}, min {figures['label_iou_min']:.3f}; mean tissue colour "
                   f"{figures['tissue_rgb_generated']} against real {figures['tissue_rgb_real']}; "
                   f"{figures['ms_per_tile']:.0f} ms per tile.")
    report.data["heldout_rgb"] = figures
    report.check("held-out pix2pixHD", None if smoke else figures["label_iou_mean"] > 0.5,
                 f"label IoU {figures['label_iou_mean']:.3f}, {figures['ms_per_tile']:.0f} ms per tile")
    return figures


def montage(compact: dict[str, Path], held: Path, device: torch.device, path: Path, size: tuple[int, int],
            rows: int = 3) -> None:
    """coarse | generated fine | real fine | generated RGB | real RGB, at half size."""
    engine = Engine(compact.get("pix2pix", "none"), compact.get("pix2pixhd", "none"), device=str(device))
    lines = []
    for p in sorted((held / "coarse").glob("*.png"))[:rows]:
        coarse, fine_real = read(p, size), read(held / "fine" / p.name, size)
        rgb_real = cv2.cvtColor(read(held / "rgb" / p.name, size, colour=True), cv2.COLOR_RGB2BGR)
        fine = engine.fine(coarse, 0) if engine.mask is not None else fine_real
        rgb = cv2.cvtColor(engine.rgb(fine_real, 0), cv2.COLOR_RGB2BGR) if engine.rgb_model is not None else rgb_real
        panels = [cv2.cvtColor(m, cv2.COLOR_GRAY2BGR) for m in (coarse, fine, fine_real)] + [rgb, rgb_real]
        lines.append(np.hstack([cv2.resize(x, (x.shape[1] // 2, x.shape[0] // 2), interpolation=cv2.INTER_AREA)
                                for x in panels]))
    if lines:
        cv2.imwrite(str(path), np.vstack(lines), [cv2.IMWRITE_JPEG_QUALITY, 88])


def bring_back(report, compact: dict[str, Path], out: Path) -> None:
    """Copy compacted checkpoints that fit the files allowed back, in 15 MiB parts."""
    slots = PARTS_MAX
    for name, path in compact.items():
        size = path.stat().st_size
        parts = -(-size // PART)
        if parts > slots:
            report.check(f"bring back {name}", None, f"{size / 2 ** 20:.0f} MiB compacted: more than the "
                         f"{slots * 15} MiB left of what comes back; it stays on the machine")
            continue
        with open(path, "rb") as fh:
            for k in range(parts):
                (out / f"{path.name}.part{k}").write_bytes(fh.read(PART))
        slots -= parts
        report.check(f"bring back {name}", True, f"{parts} part(s) of {path.name}; join with cat")
