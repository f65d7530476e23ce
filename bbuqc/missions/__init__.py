"""Missions: the catalogue (ids, names, domains, focus points) and their pass/fail rules.

``from bbuqc.missions import MISSIONS, Mission`` is the catalogue (``catalogue.py``),
light enough for the config path. The rules that apply a mission's focus points to a
group's Stage-A summaries are in ``bbuqc.missions.rules`` (``judge_group``), imported
on use: they read summaries, so they pull in the summary fact extraction.
"""

from .catalogue import MISSIONS, MISSIONS_BY_NAME, Mission, get_mission, resolve_mission

__all__ = ["MISSIONS", "MISSIONS_BY_NAME", "Mission", "get_mission", "resolve_mission"]
