"""Foundations every layer may use, importing nothing else of coordfit: errors, the
registry and typed configs, atomic file writes and run folders, the checkpoint unit
(safetensors weights, optimiser state, training state), device defaults and settings,
signal handling, image metrics, the progress display and phase timing."""
