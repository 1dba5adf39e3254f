"""Job backend: typed job specs, the Huey instance and tasks, the worker runtime and its
supervisor, and the services the UI calls (wired in `backend/services.py`)."""
