"""Training: the trainers' configs (``config``: TrainConfig, NVSTrainConfig, importable
without torch), the fitting loop (Trainer), presets, loggers and curves, and the
view-synthesis trainer (``nvs_train``), which runs on the same loggers, progress display,
checkpoint unit and resume rule."""
