"""Reading segmentation data: find samples, preprocess, split, stream batches.

```python
from segkit import data

samples = data.find_samples("figshare-brain-tumor-256")         # layout detected
split = data.split_samples(samples, method="blocks", seed=0)    # patient-safe for Figshare
split.save("runs/split.json")
train, val, test = split.select(samples)
batches = data.SegmentationDataset(train, batch_size=16, augment=data.Augment(), cache="cache")
X, Y = data.load_arrays(test)                                    # small sets, in memory
print(data.inspect("figshare-brain-tumor-256").format())

# Four classes: background and the slice's tumour type from labels.csv.
classes = data.resolve_classes("figshare-brain-tumor-256", classes="tumour-type")
X, Y = data.load_arrays(test, data.Preprocessing.for_classes(classes))  # Y in 0..3
```
"""

from __future__ import annotations

from segkit.data.augment import Augment
from segkit.data.cache import SampleCache
from segkit.data.classes import Classes, read_classes_file, resolve_classes
from segkit.data.errors import DataError, Problem
from segkit.data.imagefiles import IMAGE_SUFFIXES
from segkit.data.inspection import InspectionReport, inspect
from segkit.data.loading import load_arrays
from segkit.data.preprocess import (
    LGG_CHANNELS,
    Preprocessing,
    decode,
    load_sample,
    normalize,
    original_size,
    read_image,
    read_mask,
    read_mask_file,
    read_pair,
    resize_image,
    resize_mask,
)
from segkit.data.samples import LAYOUTS, Sample, detect_layout, find_samples
from segkit.data.splits import Split, split_samples


def __getattr__(name: str):
    # The Keras-based pipeline loads on first use, so reading data (and running exported ONNX
    # models) works without a deep-learning backend installed.
    if name == "SegmentationDataset":
        from segkit.data.pipeline import SegmentationDataset

        return SegmentationDataset
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "IMAGE_SUFFIXES",
    "LAYOUTS",
    "LGG_CHANNELS",
    "Augment",
    "Classes",
    "DataError",
    "InspectionReport",
    "Preprocessing",
    "Problem",
    "Sample",
    "SampleCache",
    "SegmentationDataset",
    "Split",
    "decode",
    "detect_layout",
    "find_samples",
    "inspect",
    "load_arrays",
    "load_sample",
    "normalize",
    "original_size",
    "read_image",
    "read_mask",
    "read_mask_file",
    "read_classes_file",
    "read_pair",
    "resize_image",
    "resize_mask",
    "resolve_classes",
    "split_samples",
]
