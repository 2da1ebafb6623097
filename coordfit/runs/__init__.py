"""Run folders read back: the saved run spec (a run's config, ``--config``, resume checks)
and the listing behind ``coordfit runs``. The checkpoint unit they rely on is
:mod:`coordfit.core.checkpoint`, below every layer that reads or writes one."""
