"""Missions are the `mission` group's YAML files: the built-in seven (conf/mission/), and yours from your own
config folder, seen by the prompts, the rows, Stage-B's record check and the prompts digest; a bad file or two
files with one id are refused in one line before anything runs."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from support import compose, run_cli

import bbuqc.config.store  # noqa: F401
from bbuqc.checks import problems
from bbuqc.config.schema import Domain
from bbuqc.missions import MISSIONS, all_missions, get_mission, mission_named, resolve_mission
from bbuqc.missions.catalogue import BUILT_IN_DIR, read_mission, use_search_path
from bbuqc.prompts.summary import TAXONOMY, summary_system_prompt
from bbuqc.prompts.verdict import verdict_user_prompt

REPO = Path(__file__).resolve().parents[2]

#: a mission of a user's own: BBU devices must carry a readable label (the docs' example)
LABEL = {
    "id": "bbu_label",
    "name": "BBU标签检查",
    "domain": "BBU",
    "categories": ["BBU设备", "标签"],
    "focus": ["必须检测到BBU设备", "BBU设备必须有可读的标签"],
    "decision": "标签缺失或不可读即不通过；所有检查要点都满足才通过；无关图片不能作为证据。",
}


def write_mission(conf: Path, stem: str | None = None, **fields) -> Path:
    """``<conf>/mission/<stem>.yaml`` with LABEL's fields, changed by ``fields`` (None: left out)."""
    data = {k: v for k, v in {**LABEL, **fields}.items() if v is not None}
    path = conf / "mission" / f"{stem or data.get('id', 'nameless')}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def _compose(command: str, *folders: Path, overrides: tuple[str, ...] = ()):
    search = ",".join(f"file://{f}" for f in folders if f.is_dir())
    # with its hydra node: the search path the command would read its missions from
    return compose(command, [f"hydra.searchpath=[{search}]", *overrides], return_hydra_config=True)


@pytest.fixture(autouse=True)
def built_in_only():
    yield
    use_search_path([], TAXONOMY)  # the process goes on with the built-in missions only


def test_the_built_in_missions_are_the_yaml_files():
    files = sorted(BUILT_IN_DIR.glob("*.yaml"))
    assert {p.stem for p in files} == set(MISSIONS) and len(MISSIONS) == 7
    for path in files:  # held to the taxonomy as a user's file is
        assert read_mission(path, TAXONOMY) == MISSIONS[path.stem]
    assert set(TAXONOMY) == {d.value for d in Domain}  # the domains a file may name are the ones Hydra takes
    from bbuqc.missions.rules import RULES

    # the synthetic world draws its groups in the rules' order: the built-in catalogue keeps it
    assert list(RULES) == list(MISSIONS)


def test_your_mission_is_seen_by_prompts_rows_records_and_the_digest(tmp_path):
    from bbuqc.data.records import StageARecord
    from bbuqc.data.rows import verdict_row
    from bbuqc.missions.rules import rules_label
    from bbuqc.stage_b.runner import settings_of

    conf = tmp_path / "conf"
    write_mission(conf)
    digest_before = settings_of(_compose("evaluate", conf, overrides=("data.source=files",)))["prompts"]
    use_search_path([], TAXONOMY)
    (tmp_path / "stage_a.jsonl").write_text("")
    cfg = _compose("evaluate", conf, overrides=("mission=bbu_label", "data.source=files",
                                                f"data.stage_a_jsonl=[{tmp_path / 'stage_a.jsonl'}]"))
    assert problems(cfg, "evaluate") == []
    m = get_mission("bbu_label")
    assert list(all_missions()) == [*MISSIONS, "bbu_label"] and mission_named("BBU标签检查") is m
    assert resolve_mission(cfg.mission) == m == resolve_mission("BBU标签检查")
    assert m.focus == tuple(LABEL["focus"]) and m.categories == ("BBU设备", "标签")
    assert "【本任务重点关注】BBU设备、标签" in summary_system_prompt(m)
    assert f"判定规则：{LABEL['decision']}" in verdict_user_prompt(m, {"图片_1": "无关图片"})

    # a Stage-A record naming it is a verdict row (no rules: its reason lists the focus points)
    rec = StageARecord("QC-A-20260101-1", "BBU标签检查", "pass", ["a.jpg"], {"图片_1": '{"统计":[]}'})
    row = verdict_row(rec)
    assert row["mission"] == "bbu_label" and "BBU设备必须有可读的标签" in row["solution"]
    assert rules_label("bbu_label", {"图片_1": '{"统计":[]}'}) == (None, "mission bbu_label has no rules")

    # evaluation's resume identity digests every mission's prompts: yours too
    assert settings_of(cfg)["prompts"] != digest_before
    use_search_path([], TAXONOMY)
    assert settings_of(cfg)["prompts"] == digest_before
    with pytest.raises(Exception, match="unknown mission name 'BBU标签检查'"):
        verdict_row(rec)  # without your folder, Stage-B refuses the records of a mission it does not know


def _built_in(stem: str) -> Path:
    return BUILT_IN_DIR / f"{stem}.yaml"


@pytest.mark.parametrize("case", ["missing", "domain", "category", "id_not_file", "not_a_mapping",
                                  "built_in_id", "two_folders", "name_taken"])
def test_bad_mission_files_are_refused_in_one_line(case, tmp_path):
    mine, other = tmp_path / "mine", tmp_path / "other"
    if case == "missing":
        path = write_mission(mine, decision=None)
        line = f"{path}: missing field 'decision' (a mission has id, name, domain, categories, focus, decision)"
    elif case == "domain":
        path = write_mission(mine, domain="ODF")
        line = f"{path}: domain 'ODF': expected one of BBU, RRU"
    elif case == "category":
        path = write_mission(mine, categories=["BBU设备", "尾纤"])
        line = f"{path}: categories: '尾纤' is not a BBU category; expected some of {', '.join(TAXONOMY['BBU'])}"
    elif case == "id_not_file":
        path = write_mission(mine, stem="label")
        line = f"{path}: id 'bbu_label' must be the file's name 'label' (mission=<id> selects the file)"
    elif case == "not_a_mapping":
        path = mine / "mission" / "bbu_label.yaml"
        path.parent.mkdir(parents=True)
        path.write_text("- id: bbu_label\n", encoding="utf-8")
        line = f"{path}: expected a mapping with the fields id, name, domain, categories, focus, decision"
    elif case == "built_in_id":
        path = write_mission(mine, id="bbu_wind", name="我的挡风板检查")
        line = f"mission 'bbu_wind' is defined twice: {_built_in('bbu_wind')} and {path} (one id, one file)"
    elif case == "two_folders":
        first, second = write_mission(mine), write_mission(other)
        line = f"mission 'bbu_label' is defined twice: {first} and {second} (one id, one file)"
    else:  # records name their mission by its Chinese name: two missions may not share one
        path = write_mission(mine, name=MISSIONS["rru_cable"].name)
        line = (f"mission name 'RRU线缆' is used twice: {_built_in('rru_cable')} (rru_cable) and {path} (bbu_label); "
                "Stage-A records name their mission by name")
    cfg = _compose("infer", mine, other, overrides=("data.source=files", f"data.root={tmp_path}"))
    assert problems(cfg, "infer") == [line]
    assert all_missions() == MISSIONS  # nothing of a refused folder is used


def test_a_mission_without_rules_is_refused_on_the_synthetic_world(tmp_path):
    write_mission(tmp_path)
    line = ("mission=bbu_label: has no pass/fail rules for the synthetic world (bbuqc/missions/rules.py); "
            "use data.source=files with your own data")
    for command in ("train", "infer", "evaluate"):
        overrides = ("mission=bbu_label", "task=verdict") if command != "infer" else ("mission=bbu_label",)
        assert problems(_compose(command, tmp_path, overrides=overrides), command) == [line]



@pytest.mark.parametrize("override,field", [("mission.decision='全部通过'", "decision"),
                                            ("mission.focus=['挡风板']", "focus")])
def test_a_command_line_override_of_a_mission_field_is_refused(override, field):
    """The prompts would read the override and the rows, record checks and evaluation the file: refused."""
    assert not [p for p in problems(compose("train", ["mission=bbu_wind"]), "train") if "mission" in p]
    assert problems(compose("train", ["mission=bbu_wind", override]), "train") == [
        f"mission.{field}: differs from the mission file of bbu_wind (an override?): every stage reads a mission "
        'from its file; edit the file, or add your own mission (docs/data.md, "Your own missions")']

def _cli(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    conf = f"--config-dir={tmp_path / 'conf'}"  # Hydra's options go before the overrides
    return run_cli("infer", conf, "data.source=files", f"data.root={tmp_path}", f"infer.output={tmp_path / 'out.jsonl'}",
                   f"hydra.run.dir={tmp_path / 'run'}", *overrides, cwd=tmp_path, timeout=120)


@pytest.mark.parametrize("chosen", [False, True])
def test_the_command_says_which_file_in_one_line_and_writes_nothing(chosen, tmp_path):
    """The chosen mission's bad value is refused by Hydra while composing (the file named); another file of
    the folder when the command validates. Either way: one line, exit 2, no run folder, no output."""
    path = write_mission(tmp_path / "conf", domain="ODF")
    proc = _cli(tmp_path, f"mission={'bbu_label' if chosen else 'bbu_wind'}")
    line = ("error: mission.domain='ODF': expected one of BBU, RRU (in mission/bbu_label.yaml)" if chosen
            else f"error: {path}: domain 'ODF': expected one of BBU, RRU")
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [line], proc.stderr[-2000:]
    assert not (tmp_path / "run").exists() and not (tmp_path / "out.jsonl").exists()


def test_training_workers_compose_your_mission_from_the_same_search_path(tmp_path):
    """A multi-GPU run's workers (torch.distributed.run) compose the job's config from its task overrides: the
    search path that holds your mission goes with them."""
    from bbuqc.runtime.nodes import search_path_override

    write_mission(tmp_path)
    job = _compose("train", tmp_path, overrides=("mission=bbu_label",))
    [override] = search_path_override(job.hydra)
    assert override == f"hydra.searchpath=['file://{tmp_path}']"
    worker = compose("train", [override, *job.hydra.overrides.task])
    assert worker.mission.id == "bbu_label" and worker.mission.decision == LABEL["decision"]
    assert search_path_override(_compose("train").hydra) == []  # no folder of your own: nothing added


def test_a_training_worker_skips_the_checks_but_loads_your_missions_and_reward_plugins(tmp_path, monkeypatch,
                                                                                     restored_rewards):
    """A rank bbuqc's launcher started does not check its config again (the launcher did, on this very config:
    N ranks would read the model files and rows N times more), but the checks' loading is not skipped: your
    missions of the search path and your reward plug-ins are known in every rank."""
    from bbuqc.cli import ValidateConfig
    from bbuqc.rewards import reward_names

    write_mission(tmp_path)
    plugin = tmp_path / "worker_reward.py"
    plugin.write_text("from bbuqc.rewards import reward\nfrom bbuqc.rewards.verdict import label_score, prepare_rows\n"
                      "reward('verdict.worker_check', 0.0, 1.0, prepare=prepare_rows)(label_score)\n")
    # a config the checks refuse (an adapter that is not there), with your mission and your plug-in
    job = _compose("train", tmp_path, overrides=("task=verdict", "mission=bbu_label", f"reward.plugins=[{plugin}]",
                                                 f"model.adapter={tmp_path / 'no_adapter'}"))
    monkeypatch.delenv("BBUQC_WORKER", raising=False)
    with pytest.raises(SystemExit) as launcher:
        ValidateConfig("train").on_run_start(job)
    assert launcher.value.code == 2
    use_search_path([], TAXONOMY)  # forget what the launcher's checks loaded
    monkeypatch.setenv("BBUQC_WORKER", "1")
    ValidateConfig("train").on_run_start(job)  # no check, no exit
    assert "bbu_label" in all_missions()
    assert "verdict.worker_check" in reward_names()
