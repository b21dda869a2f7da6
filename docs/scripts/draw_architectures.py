"""Draw a block diagram per architecture into docs/images/ (run from the repository root).

The boxes' resolutions and channel counts are read from the built models (default config,
256x256x1), so the diagrams follow the code. Usage::

    python docs/scripts/draw_architectures.py
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

import segkit  # noqa: E402

OUTPUT = Path(__file__).resolve().parents[1] / "images"
COLOURS = {"encoder": "#cfe2f3", "decoder": "#d9ead3", "gate": "#fce5cd", "io": "#eeeeee"}
EDGE_STYLES = {
    "flow": {"color": "#333333", "linestyle": "-"},
    "skip": {"color": "#3c78d8", "linestyle": "--"},
    "gate": {"color": "#e69138", "linestyle": "-"},
}


class Diagram:
    """Boxes at grid positions joined by arrows; ``x`` grows rightwards, ``y`` downwards."""

    def __init__(self, title: str, x_spacing: float = 2.0):
        self.title = title
        self.x_spacing = x_spacing
        self.nodes: dict[str, tuple[float, float, str, str]] = {}
        self.edges: list[tuple[str, str, str]] = []

    def node(self, key, x, y, text, kind="encoder"):
        self.nodes[key] = (x * self.x_spacing, y, text, kind)

    def edge(self, source, target, kind="flow"):
        self.edges.append((source, target, kind))

    def draw(self, path: Path, box_width=1.8, box_height=0.62):
        xs = [x for x, *_ in self.nodes.values()]
        ys = [y for _, y, *_ in self.nodes.values()]
        width, height = max(xs) - min(xs) + 2.5, max(ys) - min(ys) + 1.6
        figure, axes = plt.subplots(figsize=(0.75 * width, 0.95 * height))
        axes.set_xlim(min(xs) - 1.2, max(xs) + 1.2)
        axes.set_ylim(max(ys) + 0.7, min(ys) - 0.9)
        axes.axis("off")
        axes.set_title(self.title, fontsize=11)
        boxes = {}
        for key, (x, y, text, kind) in self.nodes.items():
            w, h = (0.9, 0.45) if kind == "gate" else (box_width, box_height)
            boxes[key] = FancyBboxPatch(
                (x - w / 2, y - h / 2),
                w,
                h,
                boxstyle="round,pad=0.02",
                facecolor=COLOURS[kind],
                edgecolor="#666666",
            )
            axes.add_patch(boxes[key])
            axes.text(x, y, text, ha="center", va="center", fontsize=7)
        for source, target, kind in self.edges:
            (x0, y0, *_), (x1, y1, *_) = self.nodes[source], self.nodes[target]
            # Clipping at the boxes makes each arrow run from border to border.
            arrow = FancyArrowPatch(
                (x0, y0),
                (x1, y1),
                patchA=boxes[source],
                patchB=boxes[target],
                arrowstyle="-|>",
                mutation_scale=9,
                linewidth=1,
                **EDGE_STYLES[kind],
            )
            axes.add_patch(arrow)
        figure.savefig(path, dpi=90, bbox_inches="tight")
        plt.close(figure)


def _shape(model, layer_name: str) -> str:
    height, width, channels = model.get_layer(layer_name).output.shape[1:]
    return f"{height}x{width}, {channels}"


def _u_shape(
    diagram,
    model,
    depth,
    encoder,
    bottom,
    decoder,
    bottom_text,
    encoder_text,
    decoder_text,
    head_text="1x1 head\n256x256, 1",
):
    """The plain U: ``depth`` encoder levels down, a bottom, ``depth`` decoder levels up."""
    diagram.node("input", -1, 0, "input\n256x256, 1", "io")
    previous = "input"
    for level in range(depth):
        text = f"{encoder_text(level)}\n{_shape(model, encoder(level))}"
        diagram.node(f"d{level}", level, level, text)
        diagram.edge(previous, f"d{level}")
        previous = f"d{level}"
    diagram.node("bottom", depth, depth, f"{bottom_text}\n{_shape(model, bottom)}")
    diagram.edge(previous, "bottom")
    previous = "bottom"
    for level in reversed(range(depth)):
        text = f"{decoder_text}\n{_shape(model, decoder(level))}"
        diagram.node(f"u{level}", 2 * depth - level, level, text, "decoder")
        diagram.edge(previous, f"u{level}")
        diagram.edge(f"d{level}", f"u{level}", "skip")
        previous = f"u{level}"
    diagram.node("output", 2 * depth + 1, 0, head_text, "io")
    diagram.edge(previous, "output")
    return diagram


def unet() -> Diagram:
    model = segkit.models.get("unet", data_format="channels_last")
    return _u_shape(
        Diagram("unet: the notebook's U-Net (max-pool down, transposed conv up)"),
        model,
        4,
        encoder=lambda level: f"down{level + 1}_relu2",
        bottom="bottleneck_relu2",
        decoder=lambda level: f"up{level + 1}_relu2",
        bottom_text="2x conv3x3",
        encoder_text=lambda level: "2x conv3x3, pool",
        decoder_text="upconv, cat, 2 conv",
    )


def resunet() -> Diagram:
    model = segkit.models.get("resunet", data_format="channels_last")
    return _u_shape(
        Diagram("resunet: pre-activation residual blocks, strided downsampling"),
        model,
        4,
        encoder=lambda level: "stem_add" if level == 0 else f"down{level}_add",
        bottom="bridge2_conv",
        decoder=lambda level: f"up{level + 1}_add",
        bottom_text="res /2, bridge",
        encoder_text=lambda level: "stem" if level == 0 else "res block /2",
        decoder_text="up, concat, res",
    )


def fast_unet() -> Diagram:
    model = segkit.models.get("fast_unet", data_format="channels_last")
    depth = 5
    diagram = Diagram("fast_unet: stride-2 stem, residual encoder, light decoder")
    diagram.node("input", 0, 0, "input\n256x256, 1", "io")
    diagram.node("stem", 0, 1, f"conv3x3 /2\n{_shape(model, 'stem_relu')}")
    previous = "stem"
    for level in range(1, depth + 1):
        label = "res block" if level == 1 else "res block /2"
        diagram.node(
            f"d{level}", level, max(level, 1), f"{label}\n{_shape(model, f'down{level}_relu')}"
        )
        diagram.edge(previous, f"d{level}")
        previous = f"d{level}"
    diagram.edge("input", "stem")
    for level in reversed(range(1, depth)):
        x = 2 * depth - level
        text = f"up, concat, conv3x3\n{_shape(model, f'up{level}_relu')}"
        diagram.node(f"u{level}", x, level, text, "decoder")
        diagram.edge(previous, f"u{level}")
        diagram.edge(f"d{level}", f"u{level}", "skip")
        previous = f"u{level}"
    diagram.node("output", 2 * depth - 1, 0, "1x1 head, up x2\n256x256, 1", "io")
    diagram.edge(previous, "output")
    return diagram


def attention_unet() -> Diagram:
    model = segkit.models.get("attention_unet", data_format="channels_last")
    depth = 4
    diagram = Diagram("attention_unet: attention gates (AG) on the skips")
    diagram.node("input", -1, 0, "input\n256x256, 1", "io")
    previous = "input"
    for level in range(depth):
        diagram.node(
            f"d{level}", level, level, f"2x conv3x3\n{_shape(model, f'down{level + 1}_relu2')}"
        )
        diagram.edge(previous, f"d{level}")
        previous = f"d{level}"
    diagram.node("bottom", depth, depth, f"2x conv3x3\n{_shape(model, 'bottleneck_relu2')}")
    diagram.edge(previous, "bottom")
    previous = "bottom"
    for level in reversed(range(depth)):
        x = 2 * depth - level
        text = f"up, concat, 2x conv\n{_shape(model, f'up{level + 1}_relu2')}"
        diagram.node(f"g{level}", x - 1, level, "AG", "gate")
        diagram.node(f"u{level}", x, level, text, "decoder")
        diagram.edge(f"d{level}", f"g{level}", "skip")
        diagram.edge(previous, f"g{level}", "gate")
        diagram.edge(f"g{level}", f"u{level}", "skip")
        diagram.edge(previous, f"u{level}")
        previous = f"u{level}"
    diagram.node("output", 2 * depth + 1, 0, "1x1 head\n256x256, 1", "io")
    diagram.edge(previous, "output")
    return diagram


def unet_plus_plus() -> Diagram:
    model = segkit.models.get("unet_plus_plus", data_format="channels_last")
    depth = 4
    title = "unet_plus_plus: nested dense skips (each node also reads all to its left)"
    diagram = Diagram(title, x_spacing=0.95)
    for level in range(depth + 1):
        for column in range(depth + 1 - level):
            kind = "encoder" if column == 0 else "decoder"
            text = f"X{level},{column}\n{_shape(model, f'x{level}{column}_relu2')}"
            diagram.node((level, column), 2 * column + level, 1.1 * level, text, kind)
            if column == 0 and level:
                diagram.edge((level - 1, 0), (level, 0))
            if column:
                diagram.edge((level, column - 1), (level, column), "skip")
                diagram.edge((level + 1, column - 1), (level, column))
    diagram.node("output", 2 * depth, -1, "1x1 head\n256x256, 1", "io")
    diagram.edge((0, depth), "output")
    return diagram


def main() -> None:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    for draw in (unet, resunet, fast_unet, attention_unet, unet_plus_plus):
        path = OUTPUT / f"{draw.__name__}.png"
        draw().draw(path)
        print(f"{path}: {path.stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()
