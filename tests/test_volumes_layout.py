"""The volume layout (imagesTr/, labelsTr/) on NIfTI volumes built from the real LGG slices:
finding, splitting, decoding, caching and choosing its slices, and its bad input."""

from __future__ import annotations

import os
import re
import shutil

import nibabel as nib
import numpy as np
import pytest
from lgg_volumes import build_layout, write_nifti

from segkit import data
from segkit.data import DataError, volume_layout
from segkit.data.loading import decoder
from segkit.data.selection import has_foreground, parse_slices, select_slices

# Ten patients' slices 10-15 (six each), thinned to 64x64: tumour on some slices, not all.
NUMBERS = range(10, 16)


def patients(lgg_root, count):
    return sorted(p.name for p in lgg_root.iterdir() if p.is_dir())[:count]


@pytest.fixture(scope="module")
def layout(lgg_root, tmp_path_factory):
    root = tmp_path_factory.mktemp("layout")
    return root, build_layout(lgg_root, patients(lgg_root, 10), root, numbers=NUMBERS, step=4)


@pytest.fixture(scope="module")
def two_modalities(lgg_root, tmp_path_factory):
    root = tmp_path_factory.mktemp("two-modalities")
    cases = build_layout(
        lgg_root,
        patients(lgg_root, 4),
        root,
        modalities=("flair", "post-contrast"),
        numbers=NUMBERS,
        step=4,
    )
    return root, cases


def copy_of(root, tmp_path):
    return shutil.copytree(root, tmp_path / "copy", ignore=shutil.ignore_patterns("cache*"))


def mapped(slices: np.ndarray) -> np.ndarray:
    """The slices of one modality mapped to 8 bits by the volume's 0.5th and 99.5th
    percentiles, computed here with NumPy alone."""
    low, high = np.percentile(slices.astype(np.float64), (0.5, 99.5))
    return np.rint(np.clip((slices - low) / (high - low), 0, 1) * 255).astype(np.uint8)


def test_each_slice_is_a_sample_of_its_volume(layout):
    root, cases = layout
    assert data.detect_layout(root) == "volumes"
    samples = data.find_samples(root)
    assert len(samples) == 10 * len(NUMBERS)
    first = cases[samples[0].patient]
    assert [s.key for s in samples[: len(NUMBERS)]] == [
        f"{first.patient}_{k}" for k in range(len(NUMBERS))
    ]
    assert {s.layout for s in samples} == {"volumes"}
    assert samples[0].image == first.image_files[0] and samples[0].mask == first.labels
    assert samples[0].modalities == first.image_files
    assert {s.patient for s in samples} == set(cases)


def test_split_keeps_each_volume_in_one_part(layout):
    root, cases = layout
    samples = data.find_samples(root)
    split = data.split_samples(samples, seed=3)
    assert split.method == "group"
    parts = [{key.rsplit("_", 1)[0] for key in keys} for keys in (split.train, split.val)]
    test = {key.rsplit("_", 1)[0] for key in split.test}
    assert all(parts) and test
    assert not (parts[0] & parts[1]) and not (parts[0] & test) and not (parts[1] & test)
    for keys in (split.train, split.val, split.test):  # a volume's slices all go together
        counts = {p: sum(k.startswith(f"{p}_") for k in keys) for p in cases}
        assert set(counts.values()) <= {0, len(NUMBERS)}


def test_decoded_slices_are_mapped_as_predict_maps_volumes(layout):
    root, cases = layout
    samples = data.find_samples(root)
    load = decoder(data.Preprocessing(size=(64, 64)))
    for sample in samples[: 2 * len(NUMBERS)]:
        case = cases[sample.patient]
        image, mask = load(sample)
        assert image.shape == (64, 64, 1) and mask.shape == (64, 64, 1)
        np.testing.assert_array_equal(image[..., 0], mapped(case.images[..., 0])[sample.slice])
        np.testing.assert_array_equal(mask[..., 0], case.mask[sample.slice])


def test_two_modalities_are_channels_each_mapped_on_its_own(two_modalities):
    root, cases = two_modalities
    samples = data.find_samples(root)
    assert len(samples) == 4 * len(NUMBERS)
    sample = samples[4]
    case = cases[sample.patient]
    assert [p.name for p in sample.modalities] == [
        f"{case.patient}_0000.nii.gz",
        f"{case.patient}_0001.nii.gz",
    ]
    both = [mapped(case.images[..., c])[sample.slice] for c in (0, 1)]
    picks = {(0, 1): both, 1: both[:1], (1,): both[1:], (1, 0): both[::-1]}
    for channels, expected in picks.items():
        image, _ = decoder(data.Preprocessing(size=(64, 64), channels=channels))(sample)
        np.testing.assert_array_equal(image, np.stack(expected, axis=-1))
    with pytest.raises(DataError, match=r"_0000\.nii\.gz has 2 modalities; cannot make 3"):
        decoder(data.Preprocessing(channels=3))(sample)
    with pytest.raises(DataError, match="named channels .* exist only in LGG data"):
        decoder(data.Preprocessing(channels=("flair",)))(sample)


def test_one_modality_repeats_for_an_rgb_model(layout):
    root, _ = layout
    sample = data.find_samples(root)[3]
    grey, _ = decoder(data.Preprocessing(size=(32, 32)))(sample)
    rgb, _ = decoder(data.Preprocessing(size=(32, 32), channels=3))(sample)
    np.testing.assert_array_equal(rgb, np.repeat(grey, 3, axis=-1))


def test_a_case_is_decoded_once_and_cached_on_disk(layout, tmp_path, monkeypatch):
    root, _ = layout
    root = copy_of(root, tmp_path)
    samples = data.find_samples(root)[: 2 * len(NUMBERS)]  # two cases
    prep = data.Preprocessing(size=(32, 32))
    decoded = []
    real = volume_layout.decode_case
    monkeypatch.setattr(volume_layout, "decode_case", lambda *a: decoded.append(a) or real(*a))
    cached = decoder(prep, tmp_path / "cache")
    first = [cached(s) for s in samples]
    assert len(decoded) == 2  # once per case, not once per slice
    entries = sorted((tmp_path / "cache" / prep.key()).glob("volume-*.npy"))
    assert len(entries) == 2
    again = [cached(s) for s in samples]  # read back: nothing decoded
    assert len(decoded) == 2
    for (image, mask), (image2, mask2) in zip(first, again, strict=True):
        np.testing.assert_array_equal(image, image2)
        np.testing.assert_array_equal(mask, mask2)
    later = samples[0].mask.stat().st_mtime_ns + 10**9
    os.utime(samples[0].mask, ns=(later, later))  # an edited label file: a new entry
    cached(samples[0])
    assert len(decoded) == 3
    assert len(list((tmp_path / "cache" / prep.key()).glob("volume-*.npy"))) == 3

    in_memory = decoder(data.Preprocessing(size=(16, 16)))
    for sample in samples:
        in_memory(sample)
    assert len(decoded) == 5


def test_an_edited_volume_decodes_again(layout, tmp_path):
    root, cases = layout
    root = copy_of(root, tmp_path)
    sample = data.find_samples(root)[2]
    load = decoder(data.Preprocessing(size=(64, 64)), tmp_path / "cache")
    _, before = load(sample)
    labels = nib.load(sample.mask)
    emptied = write_nifti(sample.mask, np.zeros(labels.shape, np.uint8), labels.affine)
    assert emptied == sample.mask
    _, after = load(sample)
    assert before.any() and not after.any()


def test_bad_layouts_name_the_file(layout, two_modalities, tmp_path):
    root, _ = layout
    bad = copy_of(root, tmp_path)
    samples = data.find_samples(bad)
    first, second, third = (samples[i * len(NUMBERS)] for i in range(3))
    first.mask.unlink()  # an image without labels
    labels = nib.load(second.mask)  # labels of another shape
    write_nifti(second.mask, np.asanyarray(labels.dataobj)[:, :, :-1], labels.affine)
    moved = labels.affine.copy()
    moved[2, 3] += 1.5  # labels half a slice away from their image
    write_nifti(third.mask, np.asanyarray(nib.load(third.mask).dataobj), moved)
    with pytest.raises(DataError) as error:
        data.find_samples(bad)
    lines = str(error.value).splitlines()
    assert lines[0].startswith(f"3 problem(s) in {bad}")
    no_labels = f"  {first.image}: no label file labelsTr/{first.patient}.nii.gz for this image"
    assert no_labels in lines[1:]
    assert any(
        line.startswith(f"  {second.mask}: label file {second.mask.name} has shape (64, 64, 5)")
        for line in lines
    )
    assert any(
        line.startswith(f"  {third.mask}: label file {third.mask.name} lies elsewhere")
        for line in lines
    )
    kept = data.find_samples(bad, on_problem="skip")
    assert len(kept) == 7 * len(NUMBERS)

    root, cases = two_modalities
    bad = shutil.copytree(root, tmp_path / "modalities")
    one, other = list(cases)[:2]
    (bad / "imagesTr" / f"{one}_0001.nii.gz").unlink()  # a case of one modality among two
    (bad / "imagesTr" / f"{other}_0000.nii.gz").unlink()  # a gap: only channel 0001
    (bad / "labelsTr" / "stray.nii.gz").write_bytes(
        (bad / "labelsTr" / f"{one}.nii.gz").read_bytes()
    )
    with pytest.raises(DataError) as error:
        data.find_samples(bad)
    message = str(error.value)
    assert (
        f"{bad / 'imagesTr' / f'{one}_0000.nii.gz'}: case {one} has 1 modality(ies) "
        f"({one}_0000.nii.gz), the other cases 2" in message
    )
    assert f"{bad / 'labelsTr' / f'{other}.nii.gz'}: the images of case {other}" in message
    assert f"{bad / 'labelsTr' / 'stray.nii.gz'}: label file without an image" in message


def test_unreadable_volumes_are_named_when_decoded_and_inspected(layout, tmp_path):
    root, _ = layout
    bad = copy_of(root, tmp_path)
    sample = data.find_samples(bad)[0]
    whole = sample.image.read_bytes()
    sample.image.write_bytes(whole[: len(whole) // 2])  # the header survives, the voxels not
    with pytest.raises(DataError, match=f"cannot read {sample.image}: truncated") as error:
        decoder(data.Preprocessing(size=(32, 32)))(sample)
    assert "\n" not in str(error.value)
    report = data.inspect(bad)
    assert report.n_volumes == 10 and report.n_pairs == 10 * len(NUMBERS)
    assert [p.file for p in report.problems] == [str(sample.image)]
    assert report.image_sizes == {"64x64": 9 * len(NUMBERS)}


def test_inspect_counts_volumes_slices_and_coverage(layout):
    root, cases = layout
    report = data.inspect(root)
    masks = np.concatenate([case.mask for case in cases.values()])
    assert report.ok and report.layout == "volumes"
    assert (report.n_pairs, report.n_patients, report.n_volumes) == (60, 10, 10)
    assert report.image_sizes == {"64x64": 60}
    assert report.mask_coverage["empty"] == int((masks.reshape(60, -1).sum(1) == 0).sum())
    assert report.mask_coverage["mean"] == pytest.approx(masks.mean())
    assert "volumes:     10" in report.format()
    assert report.to_dict()["n_volumes"] == 10


def test_label_values_must_be_binary_or_classes(layout, tmp_path):
    root, _ = layout
    bad = copy_of(root, tmp_path)
    sample = data.find_samples(bad)[0]
    labels = nib.load(sample.mask)
    write_nifti(sample.mask, np.asanyarray(labels.dataobj) * 2, labels.affine)  # values 0, 2
    with pytest.raises(DataError, match=rf"label file {sample.mask} is not binary: values 0, 2"):
        decoder(data.Preprocessing(size=(32, 32)))(sample)
    image, mask = decoder(data.Preprocessing(size=(64, 64), num_classes=3))(
        data.find_samples(bad)[3]
    )
    assert set(np.unique(mask)) <= {0, 2}
    with pytest.raises(DataError, match="holding the value 2; classes are 0..1"):
        decoder(data.Preprocessing(size=(32, 32), num_classes=2))(sample)


@pytest.mark.parametrize("source", ["volumes", "lgg"])
def test_slices_chosen_by_foreground(layout, lgg_root, source):
    samples = data.find_samples(layout[0] if source == "volumes" else lgg_root)
    held = has_foreground(samples)
    if source == "volumes":  # checked against the masks the layout was written from
        truth = np.concatenate(
            [layout[1][p].mask for p in dict.fromkeys(s.patient for s in samples)]
        )
        np.testing.assert_array_equal(held, truth.reshape(len(truth), -1).any(1))
    assert 0 < held.sum() < len(samples)
    assert select_slices(samples, "all") == samples
    chosen = select_slices(samples, "foreground")
    assert chosen == [s for s, h in zip(samples, held, strict=True) if h]
    some = select_slices(samples, "foreground+0.5", seed=1)
    empty = len(samples) - held.sum()
    assert len(some) == held.sum() + round(0.5 * empty)
    assert set(chosen) <= set(some)
    assert some == select_slices(samples, "foreground+0.5", seed=1)
    assert some != select_slices(samples, "foreground+0.5", seed=2)
    assert [s.key for s in some] == [s.key for s in samples if s in set(some)]  # in order


@pytest.mark.parametrize(
    "text", ["some", "foreground+", "foreground+2", "foreground-0.1", "all+0.1"]
)
def test_a_bad_slices_choice_names_the_argument(text):
    with pytest.raises(
        ValueError, match=rf"slices must be all, foreground .* not '{re.escape(text)}'"
    ):
        parse_slices(text)
    assert parse_slices("foreground+0.25") == 0.25


def test_unlabelled_voxels_are_kept_only_when_asked_for(layout, tmp_path):
    root, _ = layout
    copy = copy_of(root, tmp_path)
    sample = data.find_samples(copy)[2]
    labels = nib.load(sample.mask)
    values = np.asanyarray(labels.dataobj).copy()
    values[:8, :8, :] = 255  # a corner left unlabelled
    write_nifti(sample.mask, values, labels.affine)
    kept = data.Preprocessing(size=(64, 64), num_classes=2, ignore_index=255)
    _, mask = decoder(kept)(sample)
    assert (mask == 255).any()
    with pytest.raises(DataError, match="holding the value 255; classes are 0..1"):
        decoder(data.Preprocessing(size=(64, 64), num_classes=2))(sample)
