"""`bbuqc-export`: a LoRA checkpoint merged into a standalone model folder, through ms-swift's export.

ms-swift's `export --merge_lora` (PEFT's `merge_and_unload` underneath) writes the merged weights with
the base's tokenizer, processor and chat template; the result loads as `model.path` in every command.
It is written into a hidden sibling of `export.output` and renamed into place only when complete, so
an export that dies half-way never leaves a folder that looks like a model; an existing output is
replaced only with `export.overwrite=true`, and only after the new one is complete.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from omegaconf import DictConfig

from bbuqc.errors import InputError
from bbuqc.runtime.offline import use_offline_defaults

log = logging.getLogger(__name__)

# what a merged folder must hold to be usable by every command (tokenizer files vary by family)
REQUIRED = ("config.json",)
EXPORT_RECORD = "bbuqc_export.json"


class ExportError(InputError):
    pass


def base_model_dir(cfg: DictConfig) -> tuple[str, str | None, str | None]:
    """(base folder, model_type, template): model.path, else the base the adapter was trained on."""
    from bbuqc.models.adapters import base_of_adapter
    from bbuqc.models.resolve import resolve_model

    if cfg.model.path or not str(cfg.model.preset).startswith("tiny"):
        resolved = resolve_model(cfg)
        return resolved.path, resolved.model_type, resolved.template
    base = base_of_adapter(cfg.model.adapter)
    if base is None:
        raise ExportError(f"model.path: required; model.adapter={cfg.model.adapter} names a base model "
                          "folder that is not there")
    args = json.loads((Path(cfg.model.adapter) / "args.json").read_text(encoding="utf-8"))
    return base, args.get("model_type"), args.get("template")


def export_kwargs(cfg: DictConfig, base: str, model_type: str | None, template: str | None, out: Path) -> dict:
    kw = {
        "model": base,
        "adapters": [str(Path(cfg.model.adapter).resolve())],
        "merge_lora": True,
        "output_dir": str(out),
        "use_hf": True,
        "safe_serialization": True,
        "torch_dtype": {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}[cfg.compute.precision],
    }
    if model_type:
        kw["model_type"] = model_type
    if template:
        kw["template"] = template
    if cfg.compute.device == "cpu":
        kw["device_map"] = "cpu"
    return kw


def run(cfg: DictConfig) -> dict:
    use_offline_defaults()
    out = Path(cfg.export.output).resolve()
    base, model_type, template = base_model_dir(cfg)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    from swift import ExportArguments
    from swift.pipelines.export.export import SwiftExport

    from bbuqc.models.swift_template import register_templates

    register_templates()  # a compact-vocabulary twin's template

    try:
        SwiftExport(ExportArguments(**export_kwargs(cfg, base, model_type, template, partial))).main()
        missing = [name for name in REQUIRED if not (partial / name).is_file()]
        if missing:
            raise ExportError(f"export of {cfg.model.adapter}: the merged folder lacks {', '.join(missing)}")
        record = {"base": base, "adapter": str(Path(cfg.model.adapter).resolve()), "model_type": model_type,
                  "template": template}
        (partial / EXPORT_RECORD).write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n")
        _replace(partial, out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    log.info("merged %s into %s -> %s", cfg.model.adapter, base, out)
    print(f"exported: {out}")
    return {"output": str(out), **record}


def _replace(new: Path, out: Path) -> None:
    """Rename the complete export into place; an old one (overwrite=true) goes only after."""
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
        os.replace(new, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, out)
