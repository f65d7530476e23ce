"""The process's surroundings: where bbuqc keeps things, and the offline defaults.

- ``paths``: the shipped config tree (``CONF_DIR``) and the cache folder (``$BBUQC_CACHE``);
- ``offline``: no hub, no W&B server, unless asked (set by every heavy entry point).

Import-light on purpose: the config path imports it.
"""
