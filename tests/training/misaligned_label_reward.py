"""A deliberately misaligned reward, for tests/training/test_grpo_learns.py only (a `reward.plugins` file).

`verdict.label_of_another_row` is the built-in verdict.label scorer handed the label of another prompt of the
same batch: each completion is scored against the label of the next row (cyclically) whose summaries differ
from its own. It is what a wiring bug that shifts the label column against the completions would hand GRPO.
"""

from bbuqc.rewards import reward
from bbuqc.rewards.verdict import label_score, prepare_rows


def another_prompts_label(completions, columns):
    labels = list(columns.get("group_label") or [])
    prompts = list(columns.get("summaries") or [])
    n = len(labels)
    shifted = []
    for i in range(n):
        # ms-swift passes a prompt's generations side by side: skip them to reach another group's label
        j = next((k % n for k in range(i + 1, i + n) if prompts[k % n] != prompts[i]), i)
        shifted.append(labels[j])
    return prepare_rows(completions, {**columns, "group_label": shifted})


reward("verdict.label_of_another_row", 0.0, 1.0, prepare=another_prompts_label)(label_score)
