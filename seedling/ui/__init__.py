"""Gradio 6 Blocks UI: one module per tab, shared helpers in common.py, assembled in blocks.py.
The UI talks to the backend's services only; it never touches the model."""
