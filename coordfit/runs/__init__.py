"""Run folders: the checkpoint unit, the saved run spec (reading a run's config back,
``--config``, resume checks) and the listing behind ``coordfit runs``."""
