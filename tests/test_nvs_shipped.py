"""The shipped checkpoint loads from the package and beats the nearest-view baseline."""

import pytest

from coordfit.nvs import SHIPPED_CHECKPOINT, load_model
from coordfit.nvs.data import held_out_scenes
from coordfit.nvs.evaluate import evaluate

pytestmark = [
    pytest.mark.skipif(not SHIPPED_CHECKPOINT.is_file(), reason="shipped checkpoint not present"),
    pytest.mark.usefixtures("one_thread"),
]


def test_shipped_checkpoint_is_small_and_loads_by_default():
    assert SHIPPED_CHECKPOINT.stat().st_size <= 10 * 2**20
    model, info = load_model()  # no path: the shipped one
    assert info["model"] == "efficient-lvsm" and not model.training


@pytest.mark.parametrize("input_views", [2, 4])
def test_shipped_checkpoint_beats_nearest_view_by_2db(input_views):
    model, _ = load_model()
    scores = evaluate(model, held_out_scenes(24, views=input_views + 2, size=32), input_views)
    assert scores["model"]["psnr"] >= scores["nearest_view"]["psnr"] + 2.0, scores
    assert scores["model"]["psnr"] > scores["mean_of_inputs"]["psnr"], scores
