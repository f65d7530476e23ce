"""The config tree: schema (dataclasses), ConfigStore registration, validation.

Importing this package is cheap (Hydra and OmegaConf only): it runs before `--cfg job`,
`--help` and every validation error.
"""
