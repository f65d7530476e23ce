"""Prompt builders shared by training rows, Stage-A inference and Stage-B evaluation.

Light on purpose (stdlib, natsort and the mission catalogue only): the config path may
read the built-in prompts.
"""

from .summary import (
    IRRELEVANT,
    header,
    reference_output,
    resolve_mission,
    summary_messages,
    summary_system_prompt,
    summary_user_prompt,
)
from .verdict import (
    FAIL,
    PASS,
    parse_verdict,
    verdict_messages,
    verdict_solution,
    verdict_system_prompt,
    verdict_user_prompt,
)

__all__ = [
    "FAIL",
    "IRRELEVANT",
    "PASS",
    "header",
    "parse_verdict",
    "reference_output",
    "resolve_mission",
    "summary_messages",
    "summary_system_prompt",
    "summary_user_prompt",
    "verdict_messages",
    "verdict_solution",
    "verdict_system_prompt",
    "verdict_user_prompt",
]
