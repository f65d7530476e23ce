"""Stage-A (summary task) prompts and the summary output contract.

This module is the one place where the summary contract is written down for the
model: training rows (``bbuqc.data.rows``), Stage-A inference and the synthetic
world all build their prompts here. It imports nothing heavy, and nothing from
the rest of the package but the mission catalogue and the output protocol.

The contract (REWARDS.md, "Summary output format"): a relevant image of domain
``D`` gets exactly two lines, the header ``<DOMAIN=D>, <TASK=SUMMARY>`` and one
JSON line; an irrelevant image gets the single line ``无关图片``.
"""

from __future__ import annotations

from bbuqc.missions import Mission, resolve_mission

# The output contract is defined once, in bbuqc.protocol, for prompts and rewards alike.
from bbuqc.protocol import IRRELEVANT
from bbuqc.protocol import summary_header as header

IMAGE_TAG = "<image>"  # ms-swift: one tag per image in the user content, images in the `images` column

# Taxonomy (DESIGN.md §5): category -> its attributes, in the order a summary writes them.
# ``文本`` (OCR text) and ``站点距离`` take free values; every other attribute one of ATTRIBUTE_VALUES.
BBU_TAXONOMY: dict[str, tuple[str, ...]] = {
    "BBU设备": ("品牌", "可见性", "挡风板需求"),
    "挡风板": ("可见性", "符合性", "安装方向"),
    "BBU安装螺丝": ("符合性",),
    "机柜处接地螺丝": ("符合性",),
    "地排处接地螺丝": ("符合性",),
    "BBU端光纤插头": ("符合性",),
    "ODF端光纤插头": ("符合性",),
    "光纤": ("可见性", "保护措施", "弯曲半径"),
    "电线": ("可见性", "捆扎"),
    "标签": ("文本", "可读性"),
}
RRU_TAXONOMY: dict[str, tuple[str, ...]] = {
    "RRU设备": ("品牌", "可见性"),
    "紧固件": ("安装状态",),
    "RRU接地端": ("安装状态",),
    "地排接地端螺丝": ("安装状态",),
    "尾纤": ("标签", "套管保护"),
    "接地线": ("可见性", "标签"),
    "标签": ("文本", "可读性"),
    "站点距离": ("站点距离",),
}
TAXONOMY: dict[str, dict[str, tuple[str, ...]]] = {"BBU": BBU_TAXONOMY, "RRU": RRU_TAXONOMY}

ATTRIBUTE_VALUES: dict[str, tuple[str, ...]] = {
    "品牌": ("华为", "中兴", "爱立信"),
    "可见性": ("完整", "部分"),
    "符合性": ("符合", "不符合"),
    "挡风板需求": ("免装", "空间充足需安装"),
    "安装方向": ("方向正确", "方向错误"),
    "保护措施": ("有保护", "无保护"),
    "弯曲半径": ("半径合理", "半径不合理"),
    "捆扎": ("整齐", "散乱"),
    "安装状态": ("合格", "不合格"),
    "标签": ("有标签", "无标签"),
    "套管保护": ("有套管", "无套管"),
    "可读性": ("不可读",),
}
_FREE_VALUES = {"站点距离": "米数，如26"}

def _attribute_text(attr: str) -> str:
    if attr in _FREE_VALUES:
        return f"{attr}({_FREE_VALUES[attr]})"
    return f"{attr}({'/'.join(ATTRIBUTE_VALUES[attr])})"


def _example(domain: str) -> str:
    if domain == "BBU":
        return (
            '{"dataset":"BBU","objects_total":4,"统计":[{"类别":"BBU设备","品牌":{"华为":1},'
            '"可见性":{"完整":1},"挡风板需求":{"免装":1}},{"类别":"BBU安装螺丝","符合性":{"符合":2}},'
            '{"类别":"标签","文本":{"BBU-1":1}}],"备注":["BBU设备右侧有遮挡"]}'
        )
    return (
        '{"dataset":"RRU","objects_total":4,"统计":[{"类别":"RRU设备","品牌":{"中兴":1},"可见性":{"完整":1}},'
        '{"类别":"紧固件","安装状态":{"合格":2}},{"类别":"标签","文本":{"RRU-A1":1}}],"分组统计":{"1":4}}'
    )


def summary_system_prompt(mission: Mission | str) -> str:
    m = resolve_mission(mission)
    d = m.domain
    lines = [
        f"你是通信基站施工质检的图片摘要助手。当前任务：{m.name}（领域：{d}）。",
        "只根据图片中实际可见的内容，统计与该领域相关的对象，不要推测。",
        "",
        "【输出格式】",
        "1. 与任务相关的图片：严格输出两行，不要输出其他任何内容。",
        f"   第一行：{header(d)}",
        "   第二行：一行紧凑的JSON（不换行，不加代码块）。",
        f"2. 与任务无关的图片（文档、图纸、截图等）：只输出一行：{IRRELEVANT}",
        "",
        "【JSON结构】",
        f'- "dataset"：固定为"{d}"',
        '- "objects_total"：检测到的对象总数（整数）',
        '- "统计"：列表，每个类别一项；"类别"为类别名，其余键为属性，属性值写成{取值: 数量}，如{"符合":2,"不符合":1}',
    ]
    if d == "BBU":
        lines.append('- "备注"：字符串列表，记录统计无法表达的情况（如遮挡、无法判断品牌），没有可省略；不要输出"分组统计"')
    else:
        lines.append('- "分组统计"：对象，安装点编号 → 该安装点的对象数，如{"1":4}；不要输出"备注"')
    lines += [
        "",
        "【类别与属性】",
    ]
    for category, attrs in TAXONOMY[d].items():
        if category == "标签":
            text = "BBU-1" if d == "BBU" else "RRU-A1"
            lines.append(f'- 标签：能识别的文字写在"文本"中，如{{"{text}":1}}；无法识别时写"可读性":{{"不可读":数量}}')
        else:
            lines.append(f"- {category}：" + "，".join(_attribute_text(a) for a in attrs))
    lines += [
        "",
        "【本任务重点关注】" + "、".join(m.categories),  # the mission file's `categories`
        "检查要点：" + "；".join(m.focus),
        "",
        "【示例】",
        header(d),
        _example(d),
    ]
    return "\n".join(lines)


def summary_user_prompt(mission: Mission | str) -> str:
    m = resolve_mission(mission)
    return (
        f"任务：{m.name}。请按约定格式输出这张图片的摘要：相关图片两行（{header(m.domain)} 与一行JSON），"
        f"无关图片只输出“{IRRELEVANT}”。"
    )


def summary_messages(mission: Mission | str, n_images: int = 1) -> list[dict]:
    """ms-swift style messages: system + user, with one ``<image>`` tag per image."""
    if n_images < 1:
        raise ValueError(f"n_images must be >= 1, got {n_images}")
    m = resolve_mission(mission)
    return [
        {"role": "system", "content": summary_system_prompt(m)},
        {"role": "user", "content": IMAGE_TAG * n_images + summary_user_prompt(m)},
    ]


def reference_output(domain: str | None, summary_ref: str) -> str:
    """The full model output for a reference summary line (the CHORD/SFT solution)."""
    if summary_ref.strip() == IRRELEVANT:
        return IRRELEVANT
    if not domain:
        raise ValueError("a relevant summary needs a domain for its header")
    return f"{header(domain)}\n{summary_ref}"
