"""Evaluation suites for the control tasks (edges, sketch, colourise, upscale), ready before the
model has those tasks.

Each case is one evaluated icon on white: the control made from it (model/data/controls.py) is
the one reference (for upscale the 32 px picture itself, which the pipeline upsamples to the
training control), the icon is the target, the prompt is the icon's canonical caption ("a fox")
for edges, sketch and colourise, and empty for upscale (the pixels say what to draw). Judged:

  control_edges       retrieval of the source icon (top-1, top-5 among the evaluated icons), edge
                      agreement with the control (F1, IoU at 2 px); success = retrieved (top-1),
                      lines kept (F1 >= LINES_KEPT) and coloured (colourfulness at least COLOURED
                      of the source's: gray icons may stay gray), so a copy of the control fails
  control_sketch      the same with sketch strokes
  control_colourise   retrieval, luminance PSNR against the gray control, colourfulness; success =
                      retrieved (top-1), luminance kept (>= GRAY_KEPT_DB) and coloured
  control_upscale_4x  PSNR over bicubic (dB) and retrieval; the target is the 128 px icon from a
                      32 px input
  control_upscale_512 128 -> 512 (issue #19's upscale row): pictures of every t2i kind (icons,
                      shapes, words, charts) rendered natively at 512 px, area-averaged down 4x as
                      the input, the output asked at 512 px and judged there: PSNR over bicubic, and
                      beside it what back-projection alone (bicubic made to average down to the
                      input, `postprocess.keep_low_resolution`, no model) gains, so the model's own
                      part is the difference

They run through PipelineGenerator, which passes `sample.task` and the references:
`seedling-eval --suites control_edges ...` (eval/run.py adds them to the harness's suites, after
them, seeded by name). A model without a suite's task skips it with that reason; OracleGenerator
scores 100% on every one (tests/test_controls.py).
"""

from __future__ import annotations

import numpy as np

from seedling.model.data import captions as cap
from seedling.model.data import controls as ctl
from seedling.model.data import tasks as tk
from seedling.model.eval import control_detectors as cdet
from seedling.model.eval.harness import EvalContext, Suite
from seedling.model.postprocess import keep_low_resolution

LINES_KEPT = 0.5  # line F1 at or above which the drawing follows the control's lines
GRAY_KEPT_DB = 25.0  # luminance PSNR above which the drawing kept the control's shading
COLOURED = 0.5  # share of the source's colourfulness the output must reach (gray = 0)
LARGE = 512  # control_upscale_512: the output's side
N_LARGE = 32  # its cases (each output is 16 times a 128 px one)

# suite name -> (task, control kind in controls.CONTROLS)
CONTROL_TASKS = {
    "control_edges": ("edges", "edges"),
    "control_sketch": ("sketch", "sketch"),
    "control_colourise": ("colourise", "colourise"),
    "control_upscale_4x": ("upscale", "upscale_4x"),
}


def control_cases(ctx: EvalContext, suite: str, n: int) -> list[tk.Sample]:
    task, kind = CONTROL_TASKS[suite]
    cases = []
    for icon in ctx.icons[:n]:
        truth = tk.composite(icon.rgba)
        prompt = "" if task == "upscale" else cap.icon_caption(icon.name, icon.group, None, phrasing=1)
        meta = {"kind": kind, "name": icon.name}
        if task == "upscale":
            # the small picture, as a user gives it; the pipeline upsamples it bicubic to the
            # output's size, which is exactly CONTROLS["upscale_4x"](truth), the training control
            meta["small"] = control = ctl.downsample(truth, 4)
        else:
            control = ctl.CONTROLS[kind](truth)
        cases.append(tk.Sample(task, prompt, [control], None, [truth], meta))
    return cases


def _retrieval(ctx: EvalContext, s: tk.Sample, out: np.ndarray) -> dict[str, bool]:
    top = ctx.index.rank(out, k=5)
    return {
        "top1": ctx.index.is_match(top[0], s.meta["name"]),
        "top5": any(ctx.index.is_match(t, s.meta["name"]) for t in top),
    }


def control_score(ctx: EvalContext, s: tk.Sample, outputs: list[np.ndarray]):
    out, control, kind = outputs[0], s.refs[0], s.meta["kind"]
    scores: dict[str, float | bool] = _retrieval(ctx, s, out)
    coloured = cdet.colorfulness(out) >= COLOURED * cdet.colorfulness(s.outputs[0])
    if kind in ("edges", "sketch"):
        agree = (cdet.edge_agreement if kind == "edges" else cdet.sketch_agreement)(out, control)
        scores |= {"line_f1": agree["f1"], "line_iou": agree["iou"]}
        scores["success"] = bool(scores["top1"] and agree["f1"] >= LINES_KEPT and coloured)
    elif kind == "colourise":
        db = cdet.gray_psnr(out, control)
        scores |= {"gray_psnr": min(db, 60.0), "colorfulness": cdet.colorfulness(out)}
        scores["success"] = bool(scores["top1"] and db >= GRAY_KEPT_DB and coloured)
    else:
        scores["psnr_over_bicubic"] = cdet.psnr_over_bicubic(out, s.meta["small"], s.outputs[0])
    return scores, {}


def _suite(name: str, primary: str) -> Suite:
    return Suite(
        name, lambda c: c.n_icons, lambda ctx, rng, n: control_cases(ctx, name, n), control_score, primary,
        task=CONTROL_TASKS[name][0],
    )


def upscale_large_cases(ctx: EvalContext, rng: np.random.Generator, n: int) -> list[tk.Sample]:
    """128 -> 512 upscale cases: t2i pictures of every kind drawn at 512 px (the sampler's mix),
    the input their 4x area average; meta "output_size" asks the generator for 512 px."""
    sampler = tk.TaskSampler(ctx.icons, seed=ctx.cfg.seed, size=LARGE)
    cases = []
    for _ in range(n):
        truth = sampler.t2i(rng)
        small = ctl.downsample(truth.outputs[0], 4)
        meta = {"kind": "upscale_4x", "content": truth.meta["kind"], "small": small, "output_size": LARGE}
        cases.append(tk.Sample("upscale", "", [small], None, [truth.outputs[0]], meta))
    return cases


def upscale_large_score(ctx: EvalContext, s: tk.Sample, outputs: list[np.ndarray]):
    small, truth = s.meta["small"], s.outputs[0]
    bicubic = ctl.upsample_bicubic(small, truth.shape[1::-1]).astype(np.float32)
    backprojected = np.round(keep_low_resolution(small.astype(np.float32), bicubic, 4)).clip(0, 255).astype(np.uint8)
    scores = {"psnr_over_bicubic": cdet.psnr_over_bicubic(outputs[0], small, truth),
              "backprojection_over_bicubic": cdet.psnr_over_bicubic(backprojected, small, truth)}
    scores["over_backprojection"] = scores["psnr_over_bicubic"] - scores["backprojection_over_bicubic"]
    return scores, {"content": s.meta["content"]}


CONTROL_SUITES: dict[str, Suite] = {
    "control_edges": _suite("control_edges", "success"),
    "control_sketch": _suite("control_sketch", "success"),
    "control_colourise": _suite("control_colourise", "success"),
    "control_upscale_4x": _suite("control_upscale_4x", "top1"),
    "control_upscale_512": Suite("control_upscale_512", lambda c: N_LARGE,
                                 upscale_large_cases, upscale_large_score, "psnr_over_bicubic", task="upscale"),
}
