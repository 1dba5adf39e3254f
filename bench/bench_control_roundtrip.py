"""How well each control picture survives the autoencoder's round trip (encode, decode), the
path every control takes into the model: line F1 of the decoded lines against the control's own
lines (exact, and within 1 px), and PSNR of the decoded picture.

    python bench/bench_control_roundtrip.py --model assets/default --n-icons 40 --json out.json

Rows: an edge map as users and ControlNet give it (1 px white lines on black), the same inverted
(dark on white: what `controls.model_view` gives the model), the white map dilated to 2 px, and
a sketch (dark strokes on white). Icons are every (len // n)-th of the OpenMoji set, at the
model's size. Prints a table and writes JSON with the CPU's name.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from bench_dcae import cpu_name  # bench/ is the script's folder
from PIL import Image

from seedling.model.autoencoder import Autoencoder, autoencoder_folder, images_to_tensor, tensor_to_images
from seedling.model.data import controls as ctl
from seedling.model.data.icons import load_icons
from seedling.model.data.styles import composite
from seedling.model.eval.control_detectors import line_agreement, sketch_lines
from seedling.model.eval.detectors import psnr


def _white_lines(x: np.ndarray) -> np.ndarray:
    return x[..., 0] > 127


def _dilated(edges: np.ndarray) -> np.ndarray:
    """The white lines grown to 2 px: each line pixel also lights its right, lower and lower-right
    neighbours (a 2x2 dilation)."""
    lines = _white_lines(edges)
    grown = lines.copy()
    grown[:, 1:] |= lines[:, :-1]
    grown[1:, :] |= lines[:-1, :]
    grown[1:, 1:] |= lines[:-1, :-1]
    return np.repeat((grown * 255).astype(np.uint8)[..., None], 3, axis=2)


# row name -> (make the picture from an icon image, read its lines off a picture: dark lines as a
# sketch's are read)
ROWS = {
    "edges, white on black (as given)": (ctl.edges_control, _white_lines),
    "edges, dark on white (model_view)": (lambda im: ctl.model_view("edges", ctl.edges_control(im)), sketch_lines),
    "edges dilated to 2 px, white on black": (lambda im: _dilated(ctl.edges_control(im)), _white_lines),
    "sketch, dark on white": (ctl.sketch_control, sketch_lines),
}


@torch.inference_mode()
def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="assets/default", help="a pipeline folder or an autoencoder folder")
    ap.add_argument("--n-icons", type=int, default=40)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default="control_roundtrip.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    ae = Autoencoder.from_pretrained(autoencoder_folder(args.model)).eval()
    icons = load_icons()
    step = max(1, len(icons) // args.n_icons)
    images = []
    for icon in icons[::step][: args.n_icons]:
        im = composite(icon.rgba)
        if im.shape[0] != args.size:
            im = np.asarray(Image.fromarray(im).resize((args.size, args.size), Image.LANCZOS))
        images.append(im)
    rows = []
    for name, (make, lines_of) in ROWS.items():
        f1_0, f1_1, psnr_db = [], [], []
        for im in images:
            c = make(im)
            back = np.asarray(tensor_to_images(ae.decode(ae.encode(images_to_tensor([c]))))[0])
            want, got = lines_of(c), lines_of(back)
            f1_0.append(line_agreement(got, want, 0)["f1"])
            f1_1.append(line_agreement(got, want, 1)["f1"])
            psnr_db.append(psnr(back, c))
        rows.append({"control": name, "line_f1": float(np.mean(f1_0)), "line_f1_1px": float(np.mean(f1_1)),
                     "psnr_db": float(np.mean(psnr_db))})
    print(f"{'control':42s} {'line F1':>8s} {'F1 1px':>8s} {'PSNR dB':>8s}")
    for r in rows:
        print(f"{r['control']:42s} {r['line_f1']:8.2f} {r['line_f1_1px']:8.2f} {r['psnr_db']:8.1f}")
    out = {"model": args.model, "n_icons": len(images), "size": args.size, "cpu": cpu_name(), "rows": rows}
    Path(args.json).write_text(json.dumps(out, indent=2))
    print(f"wrote {args.json} ({len(images)} icons, {cpu_name()})")
    return out


if __name__ == "__main__":
    main()
