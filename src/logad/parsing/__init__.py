"""Parsing: Drain3 template mining, the frozen template store, stable template ids."""

from logad.parsing.template_store import (
    UNKNOWN_ID,
    Template,
    TemplateMiner,
    TemplateStore,
    mask_contents,
    template_id,
)

__all__ = ["UNKNOWN_ID", "Template", "TemplateMiner", "TemplateStore", "mask_contents", "template_id"]
