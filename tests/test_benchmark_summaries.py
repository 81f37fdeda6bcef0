"""The summaries the benchmark scripts print, on hand-made inputs (fast; the scripts' end-to-end runs are in
``test_benchmarks.py``, marked slow)."""

import sys

import numpy as np

from tests.conftest import REPO


def test_objective_preference_on_hand_made_seeds():
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from atlas_icon_study import objective_preference
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    # 3 cells, 2 seeds. Cell 0: both named right; cell 1: only seed 1, which has the higher objective;
    # cell 2: only seed 0, which has the lower objective.
    objective = np.array([[5.0, 1.0, 1.0], [4.0, 2.0, 3.0]])
    right = np.array([[True, False, True], [True, True, False]])
    text = objective_preference(objective, right)
    # the best seeds are 0, 1, 1: right, right, wrong
    assert text.startswith(f"judge {4 / 6:.3f} over 2 seeds, {2 / 3:.3f} for each cell's seed of highest objective, "
                           f"{1.0:.3f} named right by some seed")
    assert text.endswith("in the 2 cells where seeds differ, the named icons have the higher objective in 0.50")
