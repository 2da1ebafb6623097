"""Fit one photo with CoordX and SIREN through the Python API and compare them.

    python examples/fit_image.py [PATH] [--seconds 30]

Each model trains for the same wall-clock budget; the script prints PSNR/SSIM and
where each run folder went, then renders the CoordX fit at twice the resolution.
"""

from __future__ import annotations

import argparse

import coordfit
from coordfit import TrainConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", nargs="?", default=None, help="image file (default: skimage:astronaut)")
    parser.add_argument("--seconds", type=float, default=30.0, help="training time per model")
    args = parser.parse_args()

    signal = coordfit.load_signal("image", args.path)
    results = {}
    for model in ("coordx", "siren"):
        train = TrainConfig(time_budget=args.seconds)  # no step limit
        results[model] = coordfit.fit(signal, model, train=train, runs_root="runs/examples")
    for model, r in results.items():
        m = r.metrics
        print(f"{model:7s} params {m['params']:,}  PSNR {m['psnr']:.2f} dB  SSIM {m['ssim']:.3f}  "
              f"steps {m['steps']}  -> {r.run_dir}")
    print("2x render:", coordfit.load(results["coordx"].run_dir).render(scale=2))


if __name__ == "__main__":
    main()
