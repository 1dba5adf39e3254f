"""Seedling Studio: `python app.py` starts the job worker and the Gradio UI (see seedling/app.py)."""
import sys

from seedling.app import main

if __name__ == "__main__":
    sys.exit(main())
