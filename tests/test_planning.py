"""The plan's rules on synthetic fingerprints, and `segkit plan` on real and broken data."""

from __future__ import annotations

import json
import math

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner
from lgg_volumes import build_layout

from segkit import planning
from segkit.cli import cli
from segkit.data.fingerprint import Fingerprint, fingerprint
from segkit.planning import PlanError


def synthetic(spacings, shapes, modalities=("MRI",), intensities=None) -> Fingerprint:
    return Fingerprint(
        root="synthetic",
        layout="volumes",
        cases=[f"case{i}" for i in range(len(spacings))],
        spacings=[tuple(s) for s in spacings],
        shapes=[tuple(s) for s in shapes],
        modalities=list(modalities),
        intensities=intensities or {m: {} for m in modalities},
        class_voxels={0: 1000, 1: 100},
    )


# --- target spacing ---------------------------------------------------------------------


def test_target_spacing_is_the_median():
    spacing, reason = planning.target_spacing(
        [(1, 1, 1), (0.8, 1, 2), (1.2, 1, 2.5)], [(64, 64, 64)] * 3
    )
    assert spacing == (1.0, 1.0, 2.0) and "median" in reason


def test_a_coarse_short_axis_takes_its_tenth_percentile():
    spacings = [(1.5, 1.5, z) for z in (10, 10, 10, 6, 5)]
    spacing, reason = planning.target_spacing(spacings, [(256, 256, 10)] * 5)
    assert spacing[:2] == (1.5, 1.5)
    assert spacing[2] == pytest.approx(np.percentile([10, 10, 10, 6, 5], 10))
    assert "10th percentile" in reason


def test_the_coarse_axis_never_gets_finer_than_the_others():
    spacings = [(2.0, 2.0, z) for z in (10, 10, 10, 1, 1)]
    spacing, _ = planning.target_spacing(spacings, [(256, 256, 10)] * 5)
    assert spacing[2] == pytest.approx(2.0 + 1e-5)


def test_a_coarse_axis_with_many_voxels_keeps_the_median():
    spacings = [(1.0, 1.0, z) for z in (4, 4, 4, 1, 1)]
    spacing, _ = planning.target_spacing(spacings, [(64, 64, 64)] * 5)
    assert spacing == (1.0, 1.0, 4.0)


# --- 2-D or 3-D ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spacing, dims, axis",
    [((1, 1, 1), 3, None), ((1, 1, 3), 3, None), ((1, 1, 3.5), 2, 2), ((5, 0.8, 0.8), 2, 0)],
)
def test_strong_anisotropy_favours_2d(spacing, dims, axis):
    chosen, slice_axis, _ = planning.choose_dims(spacing)
    assert (chosen, slice_axis) == (dims, axis)


# --- depth --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spacing, patch, pools",
    [
        ((1, 1, 1), (64, 64, 64), (4, 4, 4)),
        ((1, 1, 1), (64, 64, 16), (4, 4, 2)),
        # The 3 mm axis waits one step, until the others' spacing is within twice its own.
        ((1, 1, 3), (128, 128, 32), (5, 5, 3)),
        ((1, 1), (16, 24), (2, 2)),
    ],
)
def test_pooling_until_about_four_voxels(spacing, patch, pools):
    got = planning.pooling(spacing, patch)
    assert got == pools
    assert all(math.ceil(p / 2**n) >= planning.MIN_FEATURE_EDGE for p, n in zip(patch, got))


# --- patch and batch for a budget ---------------------------------------------------------


def test_memory_estimate_grows_with_batch_and_patch():
    pools = (4, 4, 4)
    one = planning.estimate_memory((64, 64, 64), pools, 1)
    assert planning.estimate_memory((64, 64, 64), pools, 2) == 2 * one
    assert planning.estimate_memory((128, 64, 64), pools, 1) > one


def test_patch_fits_the_budget_and_grows_with_it():
    spacing, median = (1.0, 1.0, 1.0), (160, 160, 160)
    small = planning.patch_and_batch(spacing, median, 1e9, planning.parse_memory("2GB"))
    large = planning.patch_and_batch(spacing, median, 1e9, planning.parse_memory("16GB"))
    for patch, pools, batch in (small, large):
        assert planning.estimate_memory(patch, pools, 2) <= planning.parse_memory("16GB")
        assert all(p % 2**n == 0 for p, n in zip(patch, pools))
        assert batch >= planning.MIN_BATCH
    assert math.prod(large[0]) > math.prod(small[0])
    assert planning.estimate_memory(small[0], small[1], 2) <= planning.parse_memory("2GB")


def test_patch_follows_the_spacing_and_the_median_shape():
    # Half as many voxels along a 2 mm axis; never far beyond the median shape.
    patch, _, _ = planning.patch_and_batch((1.0, 1.0, 2.0), (96, 96, 48), 1e9, 10**12)
    assert patch[2] < patch[0] and patch[0] <= 96 and patch[2] <= 48


def test_batch_covers_at_most_five_percent_of_the_data():
    patch, _, batch = planning.patch_and_batch((1, 1, 1), (32, 32, 32), 4 * 32**3, 10**12)
    assert patch == (32, 32, 32) and batch == planning.MIN_BATCH  # 5% of 4 volumes < 2
    _, _, batch = planning.patch_and_batch((1, 1, 1), (32, 32, 32), 1000 * 32**3, 10**12)
    assert batch == round(1000 * 0.05)


def test_a_budget_no_patch_fits_is_an_error():
    with pytest.raises(PlanError, match="no patch fits the memory budget"):
        planning.patch_and_batch((1, 1, 1), (64, 64, 64), 1e9, planning.parse_memory("1MB"))
    # The smallest patch is one pooling step per axis, or the median shape where it is less.
    with pytest.raises(PlanError, match=r"the smallest, \(8, 8, 4\)"):
        planning.patch_and_batch((1, 1, 1), (64, 64, 4), 1e9, planning.parse_memory("10KB"))


# --- normalisation ------------------------------------------------------------------------


def test_mri_is_z_scored_per_case_and_ct_clipped_first():
    stats = {"mean": 40.0, "std": 100.0, "percentile_00_5": -900.0, "percentile_99_5": 400.0}
    schemes = planning.normalisation(["T2", "CT"], {"T2": {}, "CT": stats})
    assert schemes[0] == {"modality": "T2", "scheme": "zscore"}
    assert schemes[1] == {
        "modality": "CT",
        "scheme": "ct",
        "clip": [-900.0, 400.0],
        "mean": 40.0,
        "std": 100.0,
    }


# --- the whole plan and its overrides -----------------------------------------------------


def anisotropic_fingerprint():
    return synthetic([(0.8, 0.8, 5.0)] * 4, [(128, 128, 20)] * 4, modalities=("FLAIR",))


def test_plan_of_thick_slices_is_2d_across_them():
    plan = planning.make_plan(anisotropic_fingerprint(), memory="4GB")
    assert plan.dims == 2 and plan.slice_axis == 2 and len(plan.patch_size) == 2
    assert plan.depth == max(plan.pools_per_axis) + 1
    assert plan.estimated_memory <= plan.memory_budget and plan.overridden == []


def test_every_value_can_be_given():
    plan = planning.make_plan(
        anisotropic_fingerprint(),
        memory="4GB",
        dims=3,
        target_spacing_mm=(1, 1, 2),
        patch_size=(32, 32, 16),
        batch_size=3,
    )
    assert (plan.dims, plan.target_spacing, plan.patch_size, plan.batch_size) == (
        3,
        (1.0, 1.0, 2.0),
        (32, 32, 16),
        3,
    )
    assert plan.overridden == ["target_spacing", "dims", "patch_size", "batch_size"]


@pytest.mark.parametrize(
    "given, message",
    [
        (dict(patch_size=(4096, 4096)), "does not fit the memory budget"),
        (dict(patch_size=(64, 64, 64)), "must be 2 positive numbers for 2-D"),
        (dict(batch_size=10**6), "more than the memory budget"),
        (dict(target_spacing_mm=(1, 0, 1)), "positive"),
        (dict(target_spacing_mm=(1, float("nan"), 1)), "positive"),
        (dict(memory="lots"), "not a size"),
    ],
)
def test_values_that_cannot_work_are_refused(given, message):
    with pytest.raises(PlanError, match=message):
        planning.make_plan(anisotropic_fingerprint(), **({"memory": "4GB"} | given))


def test_parse_memory():
    assert planning.parse_memory("8GB") == 8 * 10**9
    assert planning.parse_memory("512MiB") == 512 * 2**20
    assert planning.parse_memory("1.5 gb") == 1_500_000_000


# --- on real data, and `segkit plan` ------------------------------------------------------


def test_plan_on_real_lgg_patients(lgg_root, tmp_path):
    out = tmp_path / "plan.json"
    result = CliRunner().invoke(
        cli, ["plan", str(lgg_root), "--memory", "8GB", "--out", str(out)], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert "target spacing" in result.output and "assumed (1.0, 1.0, 3.0)" in result.output
    written = json.loads(out.read_text())
    patients = sorted(p.name for p in lgg_root.iterdir() if p.is_dir())
    assert written["fingerprint"]["cases"] == patients
    assert written["fingerprint"]["assumed_spacing"] == [1.0, 1.0, 3.0]
    assert written["fingerprint"]["shapes"][0][:2] == [256, 256]
    stats = written["fingerprint"]["intensities"]["FLAIR"]
    assert 0 <= stats["percentile_00_5"] < stats["median"] < stats["percentile_99_5"] <= 255
    assert set(written["fingerprint"]["class_voxels"]) == {"0", "1"}
    assert written["dims"] == 3 and written["target_spacing"] == [1.0, 1.0, 3.0]
    assert written["estimated_memory"] <= 8 * 10**9


def _write_nifti(path, array, affine):
    """A ``.nii`` file written header and voxels by hand: nibabel refuses to save an affine
    with a zero or NaN spacing, which is what some broken files hold."""
    header = nib.Nifti1Header()
    header.set_data_shape(array.shape)
    header.set_data_dtype(array.dtype)
    header["vox_offset"], header["qform_code"], header["sform_code"] = 352, 0, 1
    header["srow_x"], header["srow_y"], header["srow_z"] = affine[:3]
    with open(path, "wb") as file:
        header.write_to(file)
        file.write(b"\0" * 4)
        file.write(array.tobytes(order="F"))


def _layout(tmp_path, label_shape=(16, 16, 16), label_affine=None, image_affine=None):
    (tmp_path / "imagesTr").mkdir(parents=True)
    (tmp_path / "labelsTr").mkdir()
    image_affine = np.diag([1.0, 1.0, 2.0, 1.0]) if image_affine is None else image_affine
    image = np.random.default_rng(0).random((16, 16, 16)).astype(np.float32)
    labels = np.zeros(label_shape, np.uint8)
    labels[4:10, 4:10, 4:10] = 1
    _write_nifti(tmp_path / "imagesTr" / "case.nii", image, image_affine)
    label_affine = image_affine if label_affine is None else label_affine
    _write_nifti(tmp_path / "labelsTr" / "case.nii", labels, label_affine)
    return tmp_path


def test_fingerprint_of_a_volume_layout(lgg_root, tmp_path):
    names = sorted(p.name for p in lgg_root.iterdir() if p.is_dir())[:2]
    build_layout(lgg_root, names, tmp_path, numbers=range(4, 14), step=8)
    (tmp_path / "dataset.json").write_text(json.dumps({"channel_names": {"0": "FLAIR"}}))
    found = fingerprint(tmp_path)
    assert found.cases == names and found.modalities == ["FLAIR"]
    assert found.shapes == [(32, 32, 10)] * 2 and found.assumed_spacing is None
    assert found.spacings[0] == pytest.approx((8.0, 8.0, 3.0))  # the layout's stated spacing


def test_plan_of_a_ct_volume_layout(tmp_path):
    root = _layout(tmp_path / "data")
    out = tmp_path / "plans" / "plan.json"
    result = CliRunner().invoke(
        cli,
        ["plan", str(root), "--modalities", "CT", "--memory", "1GB", "--out", str(out)],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    written = json.loads(out.read_text())
    assert written["modalities"] == ["CT"] and written["dims"] == 3
    assert written["target_spacing"] == [1.0, 1.0, 2.0]
    (scheme,) = written["normalisation"]
    stats = written["fingerprint"]["intensities"]["CT"]
    assert scheme["scheme"] == "ct"
    assert scheme["clip"] == [stats["percentile_00_5"], stats["percentile_99_5"]]
    # A patch no larger than the 16 x 16 x 16 case, rounded to its pooling.
    assert all(p % 2**n == 0 for p, n in zip(written["patch_size"], written["pools_per_axis"]))
    assert written["patch_size"] == [16, 16, 16]


@pytest.mark.parametrize(
    "broken, named",
    [
        (dict(label_shape=(16, 16, 15)), "has shape"),
        (dict(label_affine=np.diag([1.0, 1.0, 3.0, 1.0])), "lies elsewhere"),
        (dict(image_affine=np.diag([1.0, 0.0, 2.0, 1.0])), "degenerate affine"),
        (dict(image_affine=np.diag([1.0, float("nan"), 2.0, 1.0])), "degenerate affine"),
    ],
)
def test_bad_data_is_one_line_and_exit_2(tmp_path, broken, named):
    root = _layout(tmp_path / "data", **broken)
    out = tmp_path / "plan.json"
    result = CliRunner().invoke(cli, ["plan", str(root), "--memory", "1GB", "--out", str(out)])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0] and "case.nii" in lines[0]
    assert not out.exists()


@pytest.mark.parametrize(
    "args, named",
    [
        (["--memory", "1MB"], "no patch fits the memory budget"),
        (["--patch", "512,512,512"], "does not fit the memory budget"),
        (["--target-spacing", "1,0,1"], "positive"),
        (["--voxel-spacing", "1,1,1"], "voxel_spacing is for LGG"),
    ],
)
def test_bad_options_are_one_line_and_exit_2(tmp_path, args, named):
    root = _layout(tmp_path / "data")
    out = tmp_path / "plan.json"
    result = CliRunner().invoke(cli, ["plan", str(root), "--out", str(out), *args])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0]
    assert not out.exists()


def test_lgg_spacing_of_zero_is_refused(lgg_root, tmp_path):
    out = tmp_path / "plan.json"
    result = CliRunner().invoke(
        cli, ["plan", str(lgg_root), "--voxel-spacing", "1,1,0", "--out", str(out)]
    )
    assert result.exit_code == 2 and "must be three positive numbers" in result.stderr
    assert not out.exists()
