"""The studio's gallery component: gr.Gallery with its API schema computed once per process.

Gradio builds a new instance of an output component for every streamed update that skips it
(gr.skip()), and computes each new instance's API schema (a pydantic JSON schema) for the
session's config. A waiting job's updates skip the result gallery, so under load (8 clients x 4
jobs) that schema was the largest cost of the app's updates. The schema depends on the class only.

A template of gr.Gallery (`is_template`): the browser draws it with Gallery's own frontend. Gradio
writes a typing stub (gallery.pyi) beside any module that defines a component class; it is
ignored by git (.gitignore) and its write never fails an import.
"""

from __future__ import annotations

import gradio as gr


class WholeGallery(gr.Gallery):
    is_template = True
    _schema: dict | None = None

    def api_info(self) -> dict:
        if WholeGallery._schema is None:
            WholeGallery._schema = super().api_info()
        return WholeGallery._schema
