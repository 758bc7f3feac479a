"""``python -m model.evaluate`` moved: evaluation is ``python -m train.evaluate`` (same flags).

Evaluation reads preprocessed shards and the training run's held-out selection, so it lives
next to the trainer (``train/evaluate.py``, its report in ``train/report.py``); ``model/``
holds the modules and the inference pipeline only and imports nothing of ``train/``. This
stub only tells a user of the old command where it went.
"""

if __name__ == "__main__":
    raise SystemExit(
        "python -m model.evaluate moved to python -m train.evaluate (same flags); "
        "see docs/evaluate.md"
    )
