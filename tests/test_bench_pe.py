"""bench/bench_pe.py's judge: strict and graded scores agree with the harness on ground truth and
give partial credit in between; the paired comparison counts what it says."""

import importlib.util

import numpy as np
import pytest

from seedling.model.data import knowledge as kn
from seedling.model.data import tasks as tk
from seedling.model.data.icons import load_icons
from seedling.model.prompt_expansion.evaluation import load_prompt_set
from tests.conftest import REPO_ROOT


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_pe", REPO_ROOT / "bench" / "bench_pe.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_paired_difference_counts_and_interval(bench):
    p = bench.paired([0.0, 0.0, 1.0, 0.5], [1.0, 0.0, 1.0, 0.25])
    assert p["n"] == 4 and (p["wins"], p["losses"], p["ties"]) == (1, 1, 2)
    assert p["mean_diff"] == pytest.approx(0.1875)
    assert p["ci95"][0] <= p["mean_diff"] <= p["ci95"][1]


def test_seed_mean_averages_each_side_over_the_judged_seeds(bench):
    raw, expanded = bench.seed_mean([((0.0, 0.5), (1.0, 0.9)), ((1.0, 0.7), (0.0, 0.3)), (None, (1.0, 1.0))])
    assert raw == pytest.approx((0.5, 0.6)) and expanded == pytest.approx((0.5, 0.6))
    assert bench.seed_mean([((1.0, 1.0), None)]) == (None, None)


def test_judge_scores_ground_truth_full_and_partial_answers_in_between(bench):
    icons = load_icons()
    rows = load_prompt_set(bench.DEFAULT_PROMPTS)
    judge = bench.Judge(icons, rows)
    by_name = {i.name: i for i in icons}
    icon_row = next(r for r in rows if r["kind"] == "icon")
    truth = tk.composite(by_name[icon_row["icons"][0]].rgba)
    assert judge.score(icon_row, [truth]) == (1.0, 1.0)
    blank = np.full_like(truth, 255)
    strict, graded = judge.score(icon_row, [blank])
    assert strict == 0.0 and 0.0 <= graded < 1.0

    shapes_row = next(r for r in rows if r["kind"] == "shapes" and len(r["objects"]) == 1)
    objects = tuple(kn.ShapeObject(c, s, cell) for c, s, cell in shapes_row["objects"])
    assert judge.score(shapes_row, [kn.render_scene(kn.ShapeScene(objects))]) == (1.0, 1.0)
    # the right objects in the wrong cells: not exact, but count, colours and shapes are right
    moved = tuple(
        kn.ShapeObject(o.color, o.shape, "bottom right" if o.cell != "bottom right" else "top left")
        for o in objects
    )
    strict, graded = judge.score(shapes_row, [kn.render_scene(kn.ShapeScene(moved))])
    assert strict == 0.0 and graded == pytest.approx(0.75)
