"""keras.applications backbones as encoders, tapped at their layers.

Each family's network is built without its classifier and tapped, at every stride from 2 to 32,
at the last layer of that stride in the network's layer order (among the layer names the family
allows, `TAP_PATTERNS`); the strides are read from the layers' output shapes on a probe input of
known size, never from names. ``encoder.tap_names`` lists the tapped layers. Families
without a stride-2 map (ConvNeXt's stem has stride 4) give none, and the decoders run their
shallow steps without a skip, as segmentation_models_pytorch's do.

The pretrained stems take three channels. Another channel count (1 for an MRI slice, 4 for four
MRI sequences) passes first through a 1x1 convolution, ``input_channels``, initialised so the
network computes what segmentation_models_pytorch's ``set_in_channels`` computes: for one
channel the stem's kernel summed over its input channels, otherwise the kernel repeated
cyclically and scaled by ``3 / channels``. It stays trainable.

Inputs come from segkit's data pipeline scaled to [0, 1] (``normalize="divide255"``); a fixed
``input_scaling`` layer maps them to what the family was trained on (the ``"caffe"``, ``"tf"``
or ``"torch"`` mode of ``keras.applications``' ``preprocess_input``, or 0-255 for the families
that normalise inside the network), so prediction applies it with the model itself.
"""

from __future__ import annotations

import contextlib
import re
import socket
from pathlib import Path

import keras
import numpy as np
from keras import layers

from segkit.encoders._base import Encoder

#: Per-channel ``(scale, offset)`` from [0, 1] inputs to what each preprocessing mode gives
#: (``x * scale + offset``), RGB order.
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
SCALING = {
    # Caffe: 0-255 minus the ImageNet mean per channel (the stem sees BGR; after the channel
    # adapter the order of the three channels is the adapter's to learn).
    "caffe": ((255.0,) * 3, (-103.939, -116.779, -123.68)),
    "tf": ((2.0,) * 3, (-1.0,) * 3),
    "torch": (
        tuple(1 / s for s in _IMAGENET_STD),
        tuple(-m / s for m, s in zip(_IMAGENET_MEAN, _IMAGENET_STD, strict=True)),
    ),
    # The family rescales and normalises inside the network, from 0-255.
    "inside": ((255.0,) * 3, (0.0,) * 3),
}

#: Where ``"imagenet"`` weights come from, to tell offline from online without hanging.
WEIGHTS_HOST = ("storage.googleapis.com", 443)

#: The largest stride tapped; deeper "maps" are global poolings (squeeze-and-excitation).
MAX_STRIDE = 32

#: Families whose last layer at a stride is not the best tap: only names matching are tapped.
#: ResNet V2 downsamples inside a stage's last block, so its stage outputs are the next
#: block's pre-activations.
TAP_PATTERNS = {"tf": r"conv1_conv|conv\d_block\d+_preact_relu|post_relu"}

#: registry name -> (keras.applications constructor, preprocessing mode, takes
#: ``include_preprocessing``)
FAMILIES: dict[str, tuple[str, str, bool]] = {
    **{f"resnet{n}": (f"ResNet{n}", "caffe", False) for n in (50, 101, 152)},
    **{f"resnet{n}v2": (f"ResNet{n}V2", "tf", False) for n in (50, 101, 152)},
    **{f"efficientnetb{n}": (f"EfficientNetB{n}", "inside", False) for n in range(8)},
    **{
        f"efficientnetv2{v.lower()}": (f"EfficientNetV2{v}", "inside", True)
        for v in ("B0", "B1", "B2", "B3", "S", "M", "L")
    },
    **{
        f"convnext_{size}": (f"ConvNeXt{cls}", "inside", True)
        for size, cls in (
            ("tiny", "Tiny"),
            ("small", "Small"),
            ("base", "Base"),
            ("large", "Large"),
            ("xlarge", "XLarge"),
        )
    },
    "mobilenetv3small": ("MobileNetV3Small", "inside", True),
    "mobilenetv3large": ("MobileNetV3Large", "inside", True),
    **{f"densenet{n}": (f"DenseNet{n}", "torch", False) for n in (121, 169, 201)},
}


class ImagenetOffline(ConnectionError):
    """``encoder_weights="imagenet"`` asked for with no network to download them."""


@contextlib.contextmanager
def _image_data_format(data_format: str):
    """keras.applications reads the global data format: set it while a network is built."""
    before = keras.config.image_data_format()
    keras.config.set_image_data_format(data_format)
    try:
        yield
    finally:
        keras.config.set_image_data_format(before)


def online(host=WEIGHTS_HOST, timeout: float = 3.0) -> bool:
    """Whether the host that serves keras.applications' weights answers within ``timeout``."""
    try:
        with socket.create_connection(host, timeout=timeout):
            return True
    except OSError:
        return False


class ApplicationEncoder(Encoder):
    """A keras.applications network as an encoder (subclassed once per family).

    Args:
        weights: None (random), ``"imagenet"`` (downloaded by Keras when online) or the path
            of a local weights file of this family without its classifier (``include_top``
            False), as Keras saves or downloads it.
        **options: `segkit.encoders.Encoder`'s.

    Raises:
        ImagenetOffline: ``"imagenet"`` with no network; the message names the local-file
            option.
        FileNotFoundError: a weights path that does not exist.
        ValueError: a weights file of another architecture.
    """

    constructor = ""
    mode = "inside"
    takes_include_preprocessing = False
    normalize = "divide255"

    def __init__(self, *, weights=None, **options):
        super().__init__(weights=weights, **options)
        if weights not in (None, "imagenet"):
            path = Path(weights).expanduser()
            if not path.is_file():
                raise FileNotFoundError(f"encoder weights file {str(path)!r} does not exist")
            self.weights = str(path)
        self._network = None
        self.tap_names: list[str] = []

    def probe_size(self) -> int:
        # Large enough that squeeze-and-excitation's 1x1 maps sit beyond MAX_STRIDE.
        return 4 * MAX_STRIDE

    def _application(self, spatial_size, weights):
        constructor = getattr(keras.applications, self.constructor)
        shape = (*spatial_size, 3) if self.data_format == "channels_last" else (3, *spatial_size)
        kwargs = {"include_preprocessing": False} if self.takes_include_preprocessing else {}
        with _image_data_format(self.data_format):
            return constructor(include_top=False, weights=weights, input_shape=shape, **kwargs)

    def _load(self, spatial_size):
        if self.weights == "imagenet" and not online():
            raise ImagenetOffline(
                f"encoder_weights='imagenet' for {self.name!r} needs a download from "
                f"{WEIGHTS_HOST[0]}, which cannot be reached: pass the path of a local weights "
                "file instead (encoder_weights=PATH, e.g. one Keras downloaded into "
                "~/.keras/models on a machine with network)"
            )
        try:
            return self._application(spatial_size, self.weights)
        except (ValueError, OSError, KeyError) as error:
            if self.weights in (None, "imagenet"):
                raise
            reason = (
                str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            )
            raise ValueError(
                f"encoder weights file {self.weights!r} does not fit {self.name!r}: {reason}"
            ) from None

    def _taps(self, network) -> list[int]:
        """The last layer at each stride from 2 to `MAX_STRIDE`, read from output shapes on
        ``network`` (among the names `TAP_PATTERNS` allows)."""
        pattern = re.compile(TAP_PATTERNS.get(self.mode, ".*"))
        sizes = _spatial(network.input.shape, self.data_format)
        last_at = {}
        for index, layer in enumerate(network.layers):
            output = layer.output
            if not hasattr(output, "shape") or len(output.shape) != self.spatial_dims + 2:
                continue
            if not pattern.fullmatch(layer.name):
                continue
            map_sizes = _spatial(output.shape, self.data_format)
            ratios = {s / m for s, m in zip(sizes, map_sizes, strict=True) if m}
            if len(ratios) != 1:
                continue
            stride = ratios.pop()
            power_of_two = float(stride).is_integer() and not int(stride) & (int(stride) - 1)
            if 2 <= stride <= MAX_STRIDE and power_of_two:
                last_at[int(stride)] = index
        return [last_at[stride] for stride in sorted(last_at)]

    def _build(self, x):
        sizes = _spatial(x.shape, self.data_format)
        network = self._load(sizes)
        probe = self._application((self.probe_size(),) * self.spatial_dims, None)
        # By position: some families (MobileNetV3) name activations by a global counter, so
        # the probe's names differ from the network's; its layers are the same, in order.
        tapped = [network.layers[index] for index in self._taps(probe)]
        self.tap_names = [layer.name for layer in tapped]
        outputs = [layer.output for layer in tapped]
        self._network = keras.Model(network.input, outputs, name="encoder")

    def features(self, x) -> list:
        if self._network is None:
            self._build(x)
            x = self._adapt(x)
        else:  # a probe: the same layers on another input
            x = self._adapt_again(x)
        return list(self._network(x))

    def _adapt(self, x):
        """The channel adapter (if the input is not three channels) and the fixed scaling."""
        self._adapters = []
        axis = 1 if self.data_format == "channels_first" else -1
        if self.input_channels != 3:
            adapter = layers.Conv2D(
                3, 1, use_bias=False, data_format=self.data_format, name="input_channels"
            )
            adapter.build(x.shape)
            adapter.kernel.assign(channel_adapter_kernel(self.input_channels))
            self._adapters.append(adapter)
        scale, offset = SCALING[self.mode]
        broadcast = (3, 1, 1) if axis == 1 else (3,)
        self._adapters.append(
            layers.Rescaling(
                np.reshape(scale, broadcast).tolist(),
                np.reshape(offset, broadcast).tolist(),
                name="input_scaling",
            )
        )
        return self._adapt_again(x)

    def _adapt_again(self, x):
        for layer in self._adapters:
            x = layer(x)
        return x


def channel_adapter_kernel(channels: int) -> np.ndarray:
    """The 1x1 kernel from ``channels`` inputs to a three-channel stem that makes the stem
    compute segmentation_models_pytorch's ``set_in_channels``: one channel feeds all three
    (the stem's kernel summed), more feed them cyclically, scaled by ``3 / channels``."""
    kernel = np.zeros((1, 1, channels, 3), np.float32)
    if channels == 1:
        kernel[0, 0, 0, :] = 1.0
    else:
        for channel in range(channels):
            kernel[0, 0, channel, channel % 3] = 3.0 / channels
    return kernel


def _spatial(shape, data_format):
    shape = tuple(shape)
    return shape[2:] if data_format == "channels_first" else shape[1:-1]


def register_all(registry) -> None:
    """Add every family of `FAMILIES` to ``registry``."""
    for name, (constructor, mode, takes_flag) in FAMILIES.items():
        family = type(
            constructor,
            (ApplicationEncoder,),
            {
                "constructor": constructor,
                "mode": mode,
                "takes_include_preprocessing": takes_flag,
                "__doc__": f"keras.applications.{constructor}; 2-D; weights None, "
                f"'imagenet' or a local file.\n\n{ApplicationEncoder.__doc__}",
                "__module__": __name__,
            },
        )
        registry.add(name, family)
