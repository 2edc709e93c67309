"""Streaming template mining: masking, tokenizing, the miner, snapshots, the stage."""

from .miner import Template, TemplateInfo, TemplateMiner

__all__ = ["Template", "TemplateInfo", "TemplateMiner"]
