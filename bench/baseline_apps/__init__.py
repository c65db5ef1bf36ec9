"""FastAPI + task-queue applications used as benchmark baselines."""
