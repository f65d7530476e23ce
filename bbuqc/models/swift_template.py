"""The one ms-swift template bbuqc registers: Qwen2-VL's, for a tokenizer with a compact vocabulary.

ms-swift's ``Qwen2VLTemplate`` hard-codes Qwen's ids for ``<|image_pad|>`` / ``<|video_pad|>``
(151655 / 151656): a model whose tokenizer puts them elsewhere would get prompts whose visual
placeholders the template never expands. The demo's summary twin (``model=tiny_demo``) has such a
tokenizer (~1.9K rows instead of 151,936: its training step is ~40x cheaper on CPU, docs/demo.md),
so its template is this subclass, which reads the two ids from the tokenizer it is given. Everything
else (chat format, image resizing, M-RoPE positions, the collator) is ms-swift's own.

Registering is idempotent and happens in the process that builds ms-swift's arguments (training,
export); real Qwen checkpoints keep ms-swift's own ``qwen2_vl`` template.
"""
from __future__ import annotations

#: The template name the compact-vocabulary twin's preset names (conf/model/tiny_demo.yaml).
COMPACT_QWEN2_VL = "bbuqc_qwen2_vl_compact"


def register_templates() -> None:
    """Register :data:`COMPACT_QWEN2_VL` with ms-swift (once per process)."""
    from swift.template import TEMPLATE_MAPPING, register_template
    from swift.template.templates.qwen import Qwen2VLTemplate, QwenTemplateMeta

    if COMPACT_QWEN2_VL in TEMPLATE_MAPPING:
        return

    class CompactQwen2VLTemplate(Qwen2VLTemplate):
        def init_processor(self, processor) -> None:
            super().init_processor(processor)
            if processor is not None:
                tokenizer = getattr(processor, "tokenizer", processor)
                self.image_token_id = tokenizer.convert_tokens_to_ids("<|image_pad|>")
                self.video_token_id = tokenizer.convert_tokens_to_ids("<|video_pad|>")

    register_template(QwenTemplateMeta(COMPACT_QWEN2_VL, template_cls=CompactQwen2VLTemplate))
