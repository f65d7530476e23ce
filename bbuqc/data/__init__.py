"""Data layer: Stage-A records (``records``), image discovery (``discovery``), the
synthetic world (``synth``) and GRPO rows / HF datasets (``rows``).

Import the submodules directly; this package imports nothing (``rows`` keeps
``datasets`` and ``synth`` keeps PIL inside functions, so the config path stays light).
"""
