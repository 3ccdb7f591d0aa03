"""Fine-tuning jobs: creation and validation, dispatch, progress from the trainer's artifacts, reconciliation."""
