"""Render held-out procedural views with the shipped Efficient-LVSM, adding views one by one.

    python examples/nvs_render.py --out nvs_strip.png

Each row: the input views, then for a growing number of inputs (KV cache, one
``add_views`` call per new view) the rendered target beside the ground truth.
"""

from __future__ import annotations

import argparse

import imageio.v3 as iio
import numpy as np
import torch

from coordfit.nvs import ProceduralConfig, load_model, make_scene
from coordfit.nvs.data import HELD_OUT_SEED
from coordfit.core.metrics import psnr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="default: the shipped checkpoint")
    parser.add_argument("--scenes", type=int, default=4)
    parser.add_argument("--inputs", type=int, default=4)
    parser.add_argument("--out", default="nvs_strip.png")
    parser.add_argument("--zoom", type=int, default=3, help="nearest-neighbour enlargement of the PNG")
    args = parser.parse_args()

    model, _ = load_model(args.checkpoint)
    rows = []
    for i in range(args.scenes):
        s = make_scene(HELD_OUT_SEED + 500 + i, ProceduralConfig(size=32, views=args.inputs + 1))
        imgs, c2w, k = s.images[None], s.c2w[None], s.fxfycxcy[None]
        tile = list(imgs[0, : args.inputs])
        cache = None
        with torch.no_grad():
            for v in range(args.inputs):
                cache = model.add_views(cache, imgs[:, v : v + 1], c2w[:, v : v + 1], k[:, v : v + 1])
                pred = model.render(cache, c2w[:, -1:], k[:, -1:])[0, 0]
                tile.append(pred)
                print(f"scene {i}: {v + 1} inputs, PSNR {float(psnr(pred, imgs[0, -1])):.2f} dB")
        tile.append(imgs[0, -1])
        rows.append(torch.cat(tile, dim=2))
    strip = torch.cat(rows, dim=1).repeat_interleave(args.zoom, 1).repeat_interleave(args.zoom, 2)
    strip = strip.permute(1, 2, 0).clamp(0, 1).numpy()
    iio.imwrite(args.out, (strip * 255).round().astype(np.uint8))
    print(f"wrote {args.out}: inputs | renders with 1..{args.inputs} inputs | ground truth")


if __name__ == "__main__":
    main()
