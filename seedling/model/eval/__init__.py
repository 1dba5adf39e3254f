"""DreamEval-lite: model-free judges (detectors.py) and the evaluation harness (harness.py, run.py)."""
