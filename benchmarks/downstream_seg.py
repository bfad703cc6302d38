"""Proof of use (issue 17 part 5): train one small segmentation network on real and on synthetic labelled
tiles and test it on held-out real slides, per class (air, stroma, nuclei).

Arms, each trained with the same network, initial weights, steps, batch, crop and seed:

* (a) ``real``: real tiles with rule labels (``--real``: a prepared folder labelled by ``prepare --labels
  he3`` or ``trainer.data.labels.label_prepared``);
* (b) ``synthetic``: tiles from the tool (``--synthetic``: an export folder with rgb/ and labels/);
* (c) ``both``: every batch half real, half synthetic.

Test: every tile of ``--test`` (a labelled prepared folder from other slides; a slide in both ``--real``
and ``--test`` is refused). Dice per class over all test pixels together, 2 TP / (2 TP + FP + FN), and
their mean. The labels are the he3 rule's, so Dice measures how well a network trained on a set reproduces
the rule on unseen slides.

``--curve 16,32,64``: also arm (a) on N real tiles (drawn with the seed), and with ``--synthetic`` arm (b)
on 1x, 2x and 4x N synthetic tiles (``--multiples``), to say how many synthetic tiles match N real ones.

    python benchmarks/downstream_seg.py --real TRAIN --test HELDOUT [--synthetic EXPORT] [--curve 16,32,64]
        -> benchmarks/results/downstream_seg.md and .json

Network: a compact U-Net (three poolings, widths w, 2w, 4w, 8w; two 3x3 conv + batch norm + ReLU per
level; bilinear upsampling), cross-entropy plus soft Dice, Adam with a cosine decay, random square crops
with flips and quarter turns. No validation set and no early stopping: the weights after the last step are
tested, the same for every arm.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import json
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from trainer.data.classes import ClassTable, read_class_table, read_label_png  # noqa: E402
from trainer.errors import PriorPathError  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
RGB_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")


# ---------------------------------------------------------------- data

@dataclass
class Tiles:
    """RGB tiles (HxWx3 uint8) with their label maps (HxW uint8 class ids), from one folder."""

    folder: Path
    table: ClassTable
    stems: list[str]
    rgb: list[np.ndarray]
    labels: list[np.ndarray]
    sources: set[str]  # the slides they come from (manifest.csv), for the held-out check

    def __len__(self) -> int:
        return len(self.stems)

    def subset(self, n: int, seed: int) -> "Tiles":
        """``n`` tiles drawn without replacement (all of them when n >= len)."""
        if n >= len(self):
            return self
        idx = sorted(np.random.default_rng(seed).choice(len(self), n, replace=False).tolist())
        return Tiles(self.folder, self.table, [self.stems[i] for i in idx], [self.rgb[i] for i in idx],
                     [self.labels[i] for i in idx], self.sources)


def read_tiles(folder: Path, what: str) -> Tiles:
    """A folder with rgb/ and labels/ (prepared or export layout) and classes.json beside labels/."""
    folder = Path(folder)
    labels_dir, rgb_dir = folder / "labels", folder / "rgb"
    if not labels_dir.is_dir() or not rgb_dir.is_dir():
        raise PriorPathError(f"{what}: {folder} needs rgb/ and labels/ (a prepared folder labelled with "
                             "'prepare --labels he3', or an export with label maps)")
    table_path = next((p for p in (folder / "classes.json", labels_dir / "classes.json") if p.is_file()), None)
    if table_path is None:
        raise PriorPathError(f"{what}: no classes.json in {folder} or {labels_dir}")
    table = read_class_table(table_path)
    stems, rgbs, maps = [], [], []
    for path in sorted(labels_dir.glob("*.png")):
        rgb_path = next((rgb_dir / f"{path.stem}{s}" for s in RGB_SUFFIXES if (rgb_dir / f"{path.stem}{s}").is_file()),
                        None)
        if rgb_path is None:
            raise PriorPathError(f"{what}: {path.name} has no RGB tile in {rgb_dir}")
        image = cv2.imread(str(rgb_path), cv2.IMREAD_COLOR)
        if image is None:
            raise PriorPathError(f"{what}: {rgb_path}: unreadable image")
        labels = read_label_png(path, table)[0]
        if labels.shape != image.shape[:2]:
            raise PriorPathError(f"{what}: {path.name} is {labels.shape} but its RGB tile is {image.shape[:2]}")
        stems.append(path.stem)
        rgbs.append(np.ascontiguousarray(image[..., ::-1]))
        maps.append(labels)
    if not stems:
        raise PriorPathError(f"{what}: no label maps in {labels_dir}")
    return Tiles(folder, table, stems, rgbs, maps, _sources(folder))


def _sources(folder: Path) -> set[str]:
    path = folder / "manifest.csv"
    if not path.is_file():
        return set()
    with open(path, newline="", encoding="utf-8") as fh:
        return {row["source"] for row in csv.DictReader(fh) if row.get("source")}


# ---------------------------------------------------------------- network

def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class UNet(nn.Module):
    """Compact U-Net: three 2x poolings, so inputs are padded to a multiple of 8."""

    def __init__(self, n_classes: int, width: int = 16):
        super().__init__()
        w = [width, 2 * width, 4 * width, 8 * width]
        self.down = nn.ModuleList([_block(3, w[0]), _block(w[0], w[1]), _block(w[1], w[2])])
        self.bottom = _block(w[2], w[3])
        self.up = nn.ModuleList([_block(w[3] + w[2], w[2]), _block(w[2] + w[1], w[1]), _block(w[1] + w[0], w[0])])
        self.head = nn.Conv2d(w[0], n_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottom(x)
        for block, skip in zip(self.up, reversed(skips)):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return self.head(x)


def _to_input(rgb: np.ndarray) -> torch.Tensor:
    """NxHxWx3 uint8 -> Nx3xHxW float in [-1, 1]."""
    return torch.from_numpy(rgb).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - mean over classes of the batch's soft Dice: keeps the small nuclei class from being ignored."""
    prob = logits.softmax(dim=1)
    onehot = F.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2).float()
    inter = (prob * onehot).sum(dim=(0, 2, 3))
    total = prob.sum(dim=(0, 2, 3)) + onehot.sum(dim=(0, 2, 3))
    return 1.0 - ((2 * inter + 1.0) / (total + 1.0)).mean()


# ---------------------------------------------------------------- training and testing

@dataclass(frozen=True)
class TrainSettings:
    steps: int = 1000
    batch: int = 8
    crop: int = 96
    width: int = 8
    lr: float = 2e-3
    seed: int = 0


def sample_batch(pools: Sequence[Tiles], batch: int, crop: int, rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray]:
    """A batch split evenly between the pools (item i from pool i * len(pools) // batch), random crops,
    flips and quarter turns."""
    xs, ys = [], []
    for i in range(batch):
        pool = pools[i * len(pools) // batch]
        t = int(rng.integers(len(pool)))
        rgb, lab = pool.rgb[t], pool.labels[t]
        h, w = lab.shape
        if h < crop or w < crop:
            raise PriorPathError(f"{pool.folder}: tile {pool.stems[t]} ({h}x{w}) is smaller than the crop {crop}")
        y, x = int(rng.integers(h - crop + 1)), int(rng.integers(w - crop + 1))
        rgb, lab = rgb[y:y + crop, x:x + crop], lab[y:y + crop, x:x + crop]
        k = int(rng.integers(4))
        rgb, lab = np.rot90(rgb, k), np.rot90(lab, k)
        if rng.random() < 0.5:
            rgb, lab = rgb[:, ::-1], lab[:, ::-1]
        xs.append(rgb)
        ys.append(lab)
    return np.ascontiguousarray(np.stack(xs)), np.ascontiguousarray(np.stack(ys))


def train(pools: Sequence[Tiles], n_classes: int, s: TrainSettings) -> UNet:
    """The same initial weights and batch draws (from ``s.seed``) for every arm."""
    torch.manual_seed(s.seed)
    rng = np.random.default_rng(s.seed)
    model = UNet(n_classes, s.width)
    opt = torch.optim.Adam(model.parameters(), lr=s.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, s.steps), eta_min=s.lr * 0.05)
    model.train()
    for _ in range(s.steps):
        x, y = sample_batch(pools, s.batch, s.crop, rng)
        target = torch.from_numpy(y).long()
        logits = model(_to_input(x))
        loss = F.cross_entropy(logits, target) + soft_dice_loss(logits, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return model


@torch.no_grad()
def predict(model: UNet, rgb: np.ndarray) -> np.ndarray:
    """Class ids of one tile (padded by reflection to a multiple of 8, then cut back)."""
    model.eval()
    h, w = rgb.shape[:2]
    x = _to_input(rgb[None])
    ph, pw = (-h) % 8, (-w) % 8
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="reflect")
    return model(x)[0, :, :h, :w].argmax(dim=0).numpy().astype(np.uint8)


def confusion_counts(pred: np.ndarray, true: np.ndarray, n: int) -> np.ndarray:
    """n x n pixel counts, rows true class, columns predicted."""
    return np.bincount(true.astype(np.int64).ravel() * n + pred.ravel(), minlength=n * n).reshape(n, n)


def dice_from_confusion(conf: np.ndarray) -> np.ndarray:
    """Per-class Dice 2TP / (2TP + FP + FN); NaN for a class absent from both prediction and truth."""
    tp = np.diag(conf).astype(np.float64)
    denom = conf.sum(axis=0) + conf.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, 2 * tp / denom, np.nan)


def evaluate_on(model: UNet, tiles: Tiles) -> dict:
    n = len(tiles.table)
    conf = np.zeros((n, n), np.int64)
    for rgb, lab in zip(tiles.rgb, tiles.labels):
        conf += confusion_counts(predict(model, rgb), lab, n)
    dice = dice_from_confusion(conf)
    return {"dice": {c: (None if np.isnan(v) else float(v)) for c, v in zip(tiles.table.names, dice)},
            "mean_dice": float(np.nanmean(dice)),
            "confusion": conf.tolist()}


def run_arm(name: str, pools: Sequence[Tiles], test_tiles: Tiles, s: TrainSettings, log=print) -> dict:
    start = time.perf_counter()
    model = train(pools, len(test_tiles.table), s)
    trained = time.perf_counter() - start
    result = {"arm": name, "tiles": [len(p) for p in pools], "train_seconds": round(trained, 1), **evaluate_on(model, test_tiles)}
    log(f"{name:<22} tiles {'+'.join(map(str, result['tiles'])):>9}  " +
        "  ".join(f"{c} {d if d is None else round(d, 3)}" for c, d in result["dice"].items()) +
        f"  mean {result['mean_dice']:.3f}  ({trained:.0f} s)")
    return result


# ---------------------------------------------------------------- the benchmark

def check_sets(real: Tiles, test_tiles: Tiles, synthetic: Optional[Tiles]) -> None:
    for other, what in ((test_tiles, "--test"), (synthetic, "--synthetic")):
        if other is not None and other.table.names != real.table.names:
            raise PriorPathError(f"{what}: classes {other.table.names} differ from --real's {real.table.names}")
    shared = real.sources & test_tiles.sources
    if shared:
        raise PriorPathError(f"--real and --test share {len(shared)} slide(s), e.g. {sorted(shared)[0]}; the test "
                             "slides must be held out")


def run(real: Tiles, test_tiles: Tiles, synthetic: Optional[Tiles], s: TrainSettings,
        curve: Sequence[int] = (), multiples: Sequence[int] = (1, 2, 4), log=print) -> dict:
    check_sets(real, test_tiles, synthetic)
    arms = [run_arm("a real", [real], test_tiles, s, log)]
    if synthetic is not None:
        arms.append(run_arm("b synthetic", [synthetic], test_tiles, s, log))
        arms.append(run_arm("c both", [real, synthetic], test_tiles, s, log))
    base = arms[0]["mean_dice"]
    for arm in arms:
        arm["mean_ratio_to_a"] = arm["mean_dice"] / base if base > 0 else None
    points = []
    for n in curve:
        a = run_arm(f"a real N={n}", [real.subset(n, s.seed)], test_tiles, s, log)
        point = {"n_real": n, "real": a, "synthetic": []}
        for k in (multiples if synthetic is not None else ()):
            b = run_arm(f"b synthetic {k}xN={k * n}", [synthetic.subset(k * n, s.seed)], test_tiles, s, log)
            b["mean_ratio_to_real_n"] = b["mean_dice"] / a["mean_dice"] if a["mean_dice"] > 0 else None
            b["multiple"] = k
            point["synthetic"].append(b)
        matched = [b["multiple"] for b in point["synthetic"] if b["mean_dice"] >= a["mean_dice"]]
        point["smallest_matching_multiple"] = min(matched) if matched else None
        points.append(point)
    return {"arms": arms, "curve": points}


def markdown(result: dict, meta: dict) -> str:
    names = list(result["arms"][0]["dice"])
    lines = ["# Downstream segmentation: real vs synthetic labelled tiles", "",
             "Made by `benchmarks/downstream_seg.py` (see docs/downstream.md for the protocol).", "",
             f"Command: `{meta['command']}`", "",
             f"Real: {meta['real']} ({meta['n_real']} tiles); test (held-out slides): {meta['test']} "
             f"({meta['n_test']} tiles); synthetic: {meta['synthetic'] or 'not given'}"
             + (f" ({meta['n_synthetic']} tiles)" if meta["synthetic"] else "") + ".",
             "Settings: " + ", ".join(f"{k} {v}" for k, v in meta["settings"].items())
             + f"; torch {meta['torch']}, {meta['threads']} thread(s); {meta['created']}.",
             "", "Dice per class over all test pixels; ratio = the arm's mean Dice / arm (a)'s mean Dice, same run.",
             "", "| arm | training tiles | " + " | ".join(f"Dice {c}" for c in names) + " | mean Dice | ratio to (a) |",
             "|---|---|" + "---|" * (len(names) + 2)]
    for arm in result["arms"]:
        lines.append(_row(arm, names, arm["mean_ratio_to_a"]))
    if not any(a["arm"].startswith("b") for a in result["arms"]):
        lines += ["", "Synthetic arms (b) and (c): not run (no `--synthetic` export with label maps)."]
    if result["curve"]:
        lines += ["", "## How many synthetic tiles match N real ones", "",
                  "Each row's ratio is to arm (a) on the same N real tiles, same run.", "",
                  "| arm | training tiles | " + " | ".join(f"Dice {c}" for c in names) + " | mean Dice | ratio to real N |",
                  "|---|---|" + "---|" * (len(names) + 2)]
        for p in result["curve"]:
            lines.append(_row(p["real"], names, 1.0))
            for b in p["synthetic"]:
                lines.append(_row(b, names, b["mean_ratio_to_real_n"]))
        for p in result["curve"]:
            if p["synthetic"]:
                k = p["smallest_matching_multiple"]
                lines.append("")
                lines.append(f"- N = {p['n_real']} real: " + (f"{k}x as many synthetic tiles match it."
                                                                if k else "no synthetic multiple tried matches it."))
    return "\n".join(lines) + "\n"


def _row(arm: dict, names: list[str], ratio: Optional[float]) -> str:
    dice = " | ".join("" if arm["dice"][c] is None else f"{arm['dice'][c]:.3f}" for c in names)
    return (f"| {arm['arm']} | {'+'.join(map(str, arm['tiles']))} | {dice} | {arm['mean_dice']:.3f} | "
            f"{'' if ratio is None else f'{ratio:.3f}'} |")


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--real", type=Path, required=True, help="labelled prepared folder of training slides")
    p.add_argument("--test", type=Path, required=True, help="labelled prepared folder of held-out slides")
    p.add_argument("--synthetic", type=Path, default=None, help="export folder with rgb/ and labels/")
    d = TrainSettings()
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--batch", type=int, default=d.batch)
    p.add_argument("--crop", type=int, default=d.crop)
    p.add_argument("--width", type=int, default=d.width)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--curve", type=_ints, default=[], help="real N values, e.g. 16,32,64")
    p.add_argument("--multiples", type=_ints, default=[1, 2, 4], help="synthetic multiples of N (default 1,2,4)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: more threads on a busy machine are slower)")
    p.add_argument("--out", type=Path, default=RESULTS / "downstream_seg", help="results stem (.md and .json)")
    args = p.parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    s = TrainSettings(args.steps, args.batch, args.crop, args.width, args.lr, args.seed)
    try:
        real, test_tiles = read_tiles(args.real, "--real"), read_tiles(args.test, "--test")
        synthetic = read_tiles(args.synthetic, "--synthetic") if args.synthetic else None
        result = run(real, test_tiles, synthetic, s, args.curve, args.multiples,
                     log=lambda line: print(line, flush=True))
    except PriorPathError as exc:
        print(f"downstream_seg: error: {exc}", file=sys.stderr)
        return 1
    finally:
        torch.set_num_threads(threads)  # called from tests: leave the process as it was
    meta = {"created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": "python benchmarks/downstream_seg.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "real": str(args.real), "test": str(args.test), "synthetic": str(args.synthetic or ""),
            "n_real": len(real), "n_test": len(test_tiles), "n_synthetic": len(synthetic) if synthetic else 0,
            "classes": real.table.names, "settings": asdict(s), "torch": torch.__version__,
            "threads": args.threads, "python": platform.python_version()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({"meta": meta, **result}, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(markdown(result, meta))
    print(f"results in {args.out.with_suffix('.md')} and .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
