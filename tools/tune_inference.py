"""Choose a model's inference defaults on its validation split and store them (run by hand).

    python tools/tune_inference.py --weights src/segkit/weights/resunet-figshare.npz \\
        --data ../shared/data/figshare-brain-tumor-256 \\
        --manifest docs/manifests/figshare-256-blocks-seed0.json --out runs/resunet-tuning.json
    python tools/tune_inference.py --run runs/unet-figshare

It predicts the validation slices once per test-time augmentation transform and scores every
threshold and post-processing rule on them (`segkit.tuning.tune_inference`); it never reads the
test split. With ``--weights`` it stores the best settings in the weights file's header, writes
the arrays back bit for bit (and checks that they are), and prints the file's new SHA-256 and
size for ``segkit.models.pretrained.PRETRAINED`` and the model card. With ``--run`` it writes
the run folder's ``inference.json``, which ``segkit predict`` and ``segkit evaluate`` then
apply. ``--out`` also writes the whole table as JSON.
"""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

import segkit
from segkit import data
from segkit._io import write_json
from segkit.inference import Segmenter, load_model, save_run_defaults
from segkit.models import pretrained
from segkit.runs import RunFolder
from segkit.tuning import tune_inference


def weights_segmenter(path: Path) -> Segmenter:
    """The model a weights file describes, without inference defaults."""
    header = pretrained.read_header(path)
    network = segkit.models.get(header["builder"], **header["config"])
    pretrained.load_weights(network, path)
    prep = data.Preprocessing(**header["preprocessing"])
    return Segmenter(network.predict_on_batch, prep, path.stem, network)


def arrays_of(path: Path) -> dict[str, tuple]:
    """Each stored array's dtype, shape and bytes, the header left out."""
    with np.load(path) as stored:
        return {
            name: (stored[name].dtype, stored[name].shape, stored[name].tobytes())
            for name in stored.files
            if name != pretrained.HEADER_KEY
        }


@click.command()
@click.option("--weights", type=click.Path(exists=True), help="A weights .npz to tune and update.")
@click.option("--run", "run_dir", type=click.Path(exists=True), help="A run folder to tune.")
@click.option("--data", "data_dir", type=click.Path(exists=True), help="Data (with --weights).")
@click.option("--manifest", type=click.Path(exists=True), help="Split manifest (with --weights).")
@click.option("--out", type=click.Path(), help="Also write the whole table here, as JSON.")
@click.option("--batch-size", default=8, show_default=True, type=int)
@click.option("--quiet", is_flag=True, help="No progress output.")
def main(weights, run_dir, data_dir, manifest, out, batch_size, quiet) -> None:
    """Tune on the validation split; store the best settings in the weights file or run."""
    if (weights is None) == (run_dir is None):
        raise click.UsageError("give --weights or --run")
    if weights is not None:
        if not data_dir or not manifest:
            raise click.UsageError("--weights needs --data and --manifest")
        segmenter = weights_segmenter(Path(weights))
        split_name = Path(manifest).name
    else:
        if data_dir or manifest:
            raise click.UsageError("--run tunes on the run's own data and split")
        run = RunFolder(run_dir)
        data_dir, manifest = run.config().data, run.split_file
        segmenter = load_model(run_dir, defaults=False)
        split_name = f"{run_dir}/split.json"
    _, validation, _ = data.Split.load(manifest).select(data.find_samples(data_dir))
    tuning = tune_inference(segmenter, validation, batch_size=batch_size, progress=not quiet)
    print(tuning.format_table())
    best = tuning.score(tuning.best)
    plain = tuning.record("")["plain_dice_mean"]
    chosen_on = (
        f"{tuning.images} validation slices of {Path(data_dir).name} ({split_name}): per-image "
        f"mean Dice {best['dice_mean']:.4f}, {plain:.4f} without (threshold 0.5, no TTA, no "
        "post-processing)"
    )
    record = tuning.record(chosen_on)
    if out:
        write_json(out, {"settings": tuning.best.to_dict(), **record})
    if run_dir is not None:
        print(f"wrote {save_run_defaults(run_dir, tuning.best, **record)}")
        return
    path = Path(weights)
    before = arrays_of(path)
    digest = pretrained.set_inference_defaults(path, tuning.best, chosen_on=chosen_on)
    if arrays_of(path) != before:
        raise SystemExit(f"{path}: the arrays changed while the header was rewritten")
    print(f"{path}: {tuning.best}; chosen on {chosen_on}")
    print(f"arrays bit-identical ({len(before)}); SHA-256 {digest}, {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
