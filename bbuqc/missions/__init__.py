"""Missions: the catalogue (the ``mission`` group's YAML files: ids, names, domains, prompt parts) and their
pass/fail rules.

``from bbuqc.missions import get_mission, all_missions, Mission`` is the catalogue (``catalogue.py``), light
enough for the config path; ``MISSIONS`` is its built-in part only. The rules that apply a mission's focus
points to a group's Stage-A summaries are in ``bbuqc.missions.rules`` (``judge_group``), imported on use:
they read summaries, so they pull in the summary fact extraction.
"""

from .catalogue import MISSIONS, Mission, MissionError, all_missions, get_mission, mission_named, resolve_mission

__all__ = ["MISSIONS", "Mission", "MissionError", "all_missions", "get_mission", "mission_named", "resolve_mission"]
