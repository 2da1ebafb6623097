"""Training: the fitting loop (Trainer, TrainConfig), presets, loggers and curves, and the
view-synthesis trainer."""
