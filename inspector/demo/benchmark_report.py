"""``docs/evaluation.md`` and its plots (matplotlib PNGs), from what :func:`evaluate_benchmark` measured."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from inspector.demo.benchmark_eval import SUGGESTED, TRUTHS, WEN_SETTINGS, wen_key

#: The goals the issue set, to report against (not to tune the world towards).
GOALS = (
    ("memorized precision", lambda r: r["confusion"]["scores"]["memorized"]["precision"], 0.95),
    ("memorized recall", lambda r: r["confusion"]["scores"]["memorized"]["recall"], 0.90),
    ("likeness recall", lambda r: r["confusion"]["scores"]["likeness?"]["recall"], 0.80),
    ("Wen AUC, 1 step, 4 generations (outcome split)", lambda r: r["auc"]["outcome"].get(wen_key(1, 4)), 0.95),
)

PAPERS = """\
| Source | Setting | Reported |
|---|---|---|
| Carlini et al., "Extracting Training Data from Diffusion Models", USENIX Security 2023 | Stable Diffusion v1.4, the 350,000 most duplicated training captions, 500 generations each, near copy = tiled l2 below 0.15 plus a clique of 10 of 500 | 94 training images extracted; extraction concentrates on images duplicated many times in the training set (their analysis of duplicate counts) |
| Wen et al., "Detecting, Explaining, and Mitigating Memorization in Diffusion Models", ICLR 2024 | Stable Diffusion v1.4, 500 memorized vs 500 non-memorized prompts, magnitude of the text-conditional noise prediction | detection AUC about 0.96 from the first step with one generation, above 0.99 with more steps and generations |
"""

DIFFERENCES = """\
- **Model size and resolution.** The benchmark model has about 1.7 million parameters and samples 32 x 32 pixels
  directly (no VAE); Stable Diffusion v1.4 has about 860 million in its UNet and samples 512 x 512 through a
  latent space. Near copies are easier to reach and to measure at 32 px: 16 tiles of 8 x 8 pixels each.
- **Prompt count.** 44 prompts (32 duplicated subjects, 4 crop families, 8 novel families) against 350,000
  (Carlini) and 1,000 (Wen): an AUC here moves by about 0.03 for each prompt ranked on the wrong side, so read
  the figures to two decimals at most.
- **Training.** Minutes on two CPU cores instead of weeks on hundreds of GPUs; duplicate counts run from 1 to 200
  in a set of 3,472 images, so the most duplicated subject is 5.8% of all training images, far more than any
  LAION image.
- **Ground truth.** Here it is exact: every generation is compared with every training image. The papers had to
  find copies among billions of images with retrieval and manual review.
- **Wen's score at the first step.** The benchmark (and demo) model predicts the clean image (x0) with a
  cosine schedule whose first sampling step is at almost pure noise: the text-conditional noise difference there
  is the x0 difference times sqrt(alpha_bar / (1 - alpha_bar)), close to zero for every prompt. Wen et al.'s
  Stable Diffusion predicts the noise itself, where the first step already carries the prompt's pull. Read the
  one-step Wen AUC here as a property of this model class, not of the method; with 5 or 10 steps the score
  separates trained duplicated captions from crop and novel families perfectly (construction split) but not
  the prompts that are copied from those that are not (outcome split): the model pulls hard towards every
  duplicated caption it learned, copied or not.
- **Likeness against novel.** Generations of a crop family that are not near copies count as a likeness when
  the training image nearest by l2 belongs to the family; a blurry or averaged view of the subject often has a
  procedural picture nearer by l2, so that truth is itself approximate: the likeness misses sit on that line.
- **Captions.** Each duplicated subject has its own one-word caption; LAION's duplicated images often share
  captions, and memorized prompts there are longer and more specific.
"""


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def plots(evaluation: dict, folder: Path) -> dict[str, Path]:
    """Write the extraction curve, the ROC curves and the confusion matrix as PNGs into ``folder``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    from inspector.demo.benchmark_eval import PromptResult, prompt_labels, prompt_signals

    folder.mkdir(parents=True, exist_ok=True)
    res = evaluation["results"]
    out = {}

    curve = res["extraction_curve"]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    xs = [row["copies"] for row in curve]
    ax.plot(xs, [row["extraction_rate"] for row in curve], "o-", label="near copies (exact distance)")
    ax.plot(xs, [row["suggested_rate"] for row in curve], "s--", label="suggested near copies (the app)")
    ax.plot(xs, [row["prompts_flagged_by_clique"] / row["prompts"] for row in curve], "^:",
            label="prompts flagged by clique")
    ax.set_xscale("log")
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("copies of the subject in the training set")
    ax.set_ylabel("fraction")
    ax.set_title("Extraction against duplication (benchmark world)")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out["extraction"] = folder / "extraction_curve.png"
    fig.savefig(out["extraction"])
    plt.close(fig)

    prompts = [PromptResult(**{k: v for k, v in p.items() if k != "seconds"}) for p in res["prompts"]]
    labels = prompt_labels(prompts)["outcome"]
    kept = [i for i, y in enumerate(labels) if y is not None]
    fig, ax = plt.subplots(figsize=(6, 5), dpi=100)
    if kept and 0 < sum(labels[i] for i in kept) < len(kept):
        for name, values in prompt_signals(prompts).items():
            fpr, tpr, _ = roc_curve([labels[i] for i in kept], [values[i] for i in kept])
            auc = res["auc"]["outcome"][name]
            ax.plot(fpr, tpr, label=f"{name} (AUC {_fmt(auc)})")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8)
    ax.set_xlabel("false positive rate (prompts with no near copy)")
    ax.set_ylabel("true positive rate (prompts with half or more near copies)")
    ax.set_title("Prompt-level signals, ROC")
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    out["roc"] = folder / "roc.png"
    fig.savefig(out["roc"])
    plt.close(fig)

    matrix = res["confusion"]["matrix"]
    grid = [[matrix[t][s] for s in SUGGESTED] for t in TRUTHS]
    fig, ax = plt.subplots(figsize=(5, 4), dpi=100)
    ax.imshow(grid, cmap="Blues")
    for i, row in enumerate(grid):
        for j, v in enumerate(row):
            ax.text(j, i, str(v), ha="center", va="center", color="black" if v < max(map(max, grid)) / 2 else "white")
    ax.set_xticks(range(3), [f"suggested\n{s}" for s in SUGGESTED])
    ax.set_yticks(range(3), [f"truly {t}" for t in TRUTHS])
    ax.set_title("Generations: truth against the suggested verdict", fontsize=10)
    fig.tight_layout()
    out["confusion"] = folder / "confusion.png"
    fig.savefig(out["confusion"])
    plt.close(fig)
    return out


def rising_words(results: dict) -> str:
    """Does the extraction rate rise with the duplicate count? Monotone, or by Spearman's rank correlation."""
    from scipy.stats import spearmanr

    curve = results["extraction_curve"]
    rates = [row["extraction_rate"] for row in curve]
    if len(rates) < 2 or len(set(rates)) < 2:
        return "not measurable (fewer than two different rates)"
    rho = float(spearmanr([row["copies"] for row in curve], rates).statistic)
    if all(b >= a for a, b in zip(rates, rates[1:], strict=False)):
        return f"met: never falls (Spearman {rho:.2f})"
    return f"{'met' if rho > 0 else 'missed'}: Spearman rank correlation {rho:.2f}, not monotone"


def goal_rows(results: dict) -> list[tuple[str, Any, float, str]]:
    rows = []
    for name, get, goal in GOALS:
        value = get(results)
        if value is None:
            verdict = "not measurable"
        elif value >= goal:
            verdict = "met"
        else:
            verdict = f"missed by {goal - value:.3f}"
        rows.append((name, value, goal, verdict))
    return rows


def write_report(evaluation: dict, doc: Path, plot_folder: Path | None = None) -> Path:
    """Write ``doc`` (markdown) and its plots (beside it in ``evaluation/`` unless ``plot_folder``)."""
    doc = Path(doc)
    plot_folder = plot_folder or doc.parent / "evaluation"
    images = plots(evaluation, plot_folder)
    res = evaluation["results"]
    cfg = evaluation["config"]
    world = evaluation["world"]
    model = evaluation["model"]
    timing = evaluation["timing"]
    rel = {k: Path(v).relative_to(doc.parent).as_posix() for k, v in images.items()}
    lines = [
        "# How often are the verdicts right? The benchmark world",
        "",
        "Written by `inspector evaluate` (inspector/demo/benchmark_eval.py, benchmark_report.py); every number below",
        "comes from one run and is reproducible: a second run gives the same results (only the timings vary).",
        "",
        "## The world and the run",
        "",
        f"- Built by `inspector demo build --benchmark` (inspector/demo/benchmark_world.py, seed {world['seed']}):",
        f"  {world['images']} training images under {world['unique_captions']} captions: 32 duplicated subjects",
        f"  (four at each of {', '.join(map(str, world['copies']))} copies), 4 subjects seen only through",
        f"  {world['likeness_crops']} different crops each, 8 procedural families of {world['novel_per_kind']} distinct",
        "  pictures each.",
        f"- The model: the demo's recipe ({_fmt(model['unet_parameters'])} UNet parameters, 32 px), "
        f"{_fmt(model['steps'])} steps, {_fmt((model['training_seconds'] or 0) / 60, 1)} minutes of training on two CPU cores "
        "(benchmark/training_record.json).",
        f"- Each prompt sampled {cfg['n']} times (seeds {cfg['seed']}-{cfg['seed'] + cfg['n'] - 1}, "
        f"{cfg['sampling_steps']} DDIM steps, the model's default guidance) through the app's own generation path;",
        "  each generation's four nearest from an index of the training set built with the benchmark's own image",
        "  embedder, and the app's suggested verdict.",
        "- Ground truth per generation: exact brute-force tiled l2 to every training image (a near copy at 0.15 or",
        "  below); otherwise a likeness when the training image nearest by l2 shows the prompt's own subject;",
        "  otherwise novel. Per prompt: memorized when at least half of its generations are near copies, not",
        "  memorized when none is (prompts in between are left out of the AUC and counted).",
        "",
        "## Goals",
        "",
        "| Goal | Measured | Target | |",
        "|---|---|---|---|",
    ]
    for name, value, goal, verdict in goal_rows(res):
        lines.append(f"| {name} | {_fmt(value)} | >= {goal:.2f} | {verdict} |")
    extraction = [row["extraction_rate"] for row in res["extraction_curve"]]
    lines.append(f"| extraction rate rises with the duplicate count | "
                 f"{' -> '.join(f'{v:.2f}' for v in extraction)} | rising | {rising_words(res)} |")
    conf = res["confusion"]
    lines += ["", "## Suggested verdicts, per generation", "",
              f"![confusion matrix]({rel['confusion']})", "",
              f"{conf['generations']} generations. Rows: the truth; columns: what the app suggested.", "",
              "| truth \\ suggested | " + " | ".join(SUGGESTED) + " |", "|---|---|---|---|"]
    for t in TRUTHS:
        lines.append(f"| {t} | " + " | ".join(str(conf["matrix"][t][s]) for s in SUGGESTED) + " |")
    lines += ["", "| suggested verdict | precision | recall | suggested | truly so |", "|---|---|---|---|---|"]
    for s in SUGGESTED:
        sc = conf["scores"][s]
        lines.append(f"| {s} | {_fmt(sc['precision'])} | {_fmt(sc['recall'])} | {sc['suggested']} | {sc['true']} |")
    lines += ["", "## Prompt-level signals (ROC AUC)", "", f"![ROC curves]({rel['roc']})", ""]
    auc = res["auc"]
    names = [k for k in auc["outcome"] if k not in ("positives", "negatives", "left_out")]
    lines += ["| signal | AUC, outcome split | AUC, construction split |", "|---|---|---|"]
    for name in names:
        lines.append(f"| {name} | {_fmt(auc['outcome'][name])} | {_fmt(auc['construction'][name])} |")
    lines += ["",
              f"Outcome split: {auc['outcome']['positives']} memorized prompts (half or more near copies) against "
              f"{auc['outcome']['negatives']} with none; {auc['outcome']['left_out']} in between left out. "
              f"Construction split: {auc['construction']['positives']} duplicated subjects (any count, 1 included) "
              f"against {auc['construction']['negatives']} crop and novel families.",
              "Wen settings: `wen_<k>step_<g>gen` averages the text-conditional noise magnitude over the first k of "
              f"{cfg['sampling_steps']} sampling steps and g generations.", ""]
    lines += ["## Extraction against duplication", "", f"![extraction curve]({rel['extraction']})", "",
              "| copies | prompts | generations | near copies (truth) | suggested near copies | prompts with a near "
              "copy | prompts flagged by clique |", "|---|---|---|---|---|---|---|"]
    for row in res["extraction_curve"]:
        lines.append(f"| {row['copies']} | {row['prompts']} | {row['generations']} | {row['extraction_rate']:.3f} | "
                     f"{row['suggested_rate']:.3f} | {row['prompts_extracted']} | {row['prompts_flagged_by_clique']} |")
    lines += ["", "## Cost of each signal (seconds per prompt, this machine, 2 CPU threads)", "",
              "| signal | seconds per prompt |", "|---|---|"]
    for name, seconds in timing["seconds_per_prompt"].items():
        lines.append(f"| {name} | {seconds:.3f} |")
    built = timing["index_build_seconds"]
    index_words = f"of which {built:.0f} s building the index" if built else "the index was already built"
    lines += ["", f"Whole evaluation: {timing['total_seconds']:.0f} s ({index_words}).", "",
              "## Beside the papers", "", PAPERS, "", "### The honest differences", "", DIFFERENCES,
              "## Per prompt", "",
              "| prompt | kind | copies | near copies (truth) | suggested near copies | clique | "
              + " | ".join(wen_key(*s) for s in WEN_SETTINGS) + " |",
              "|---|---|---|---|---|---|" + "---|" * len(WEN_SETTINGS)]
    for p in res["prompts"]:
        lines.append(f"| {p['prompt']} | {p['kind']} | {p['copies'] or '-'} | {p['truths'].count('memorized')}/"
                     f"{len(p['truths'])} | {p['suggested'].count('memorized')}/{len(p['suggested'])} | "
                     f"{p['clique_size']} | " + " | ".join(_fmt(p['wen'].get(wen_key(*s))) for s in WEN_SETTINGS)
                     + " |")
    lines += ["", "Rebuild and rerun: `inspector demo build --benchmark` (or `--resume` to go on after a pause), "
              "then `inspector evaluate`. The raw numbers: benchmark/evaluation.json.", ""]
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text("\n".join(lines), encoding="utf-8")
    return doc


def load(path: Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))
