"""Every output states its scale and whether it is the paper's protocol (markdown, LaTeX, HTML, figure
titles and captions), with a footer naming the store, the cl-bench version and the date; --paper reaches
the HTML page, and --latex --paper is pure LaTeX."""

from __future__ import annotations

import copy
import re

from click.testing import CliRunner
from test_report import matrix

from cl_bench.cli import main
from cl_bench.report import analyse, build_figures
from cl_bench.report.plots import plt
from cl_bench.store import RunRecord, Store

MIXTURE_DATA = {
    "missing_datasets": ["cifar100", "svhn"],
    "subset_datasets": ["facescrub", "cifar10"],
    "complete": False,
    "datasets": {
        "facescrub": {"classes_present": 20, "official": None, "train": 580, "files": {"f": "aa" * 32}},
        "cifar10": {"classes_present": 10, "official": [50000, 10000], "train": 4000, "files": {"c": "bb" * 32}},
        "mnist": {
            "classes_present": 10,
            "official": [60000, 10000],
            "train": 60000,
            "complete": True,
            "files": {"m": "cc" * 32},
        },
    },
    "tasks": [
        {"name": "facescrub", "classes": 100, "train": 493, "valid": 87, "test": 145},
        {"name": "mnist", "classes": 10, "train": 1000, "valid": 177, "test": 10000},
        {"name": "cifar10", "classes": 10, "train": 1000, "valid": 177, "test": 1000},
    ],
}
OPTIONS = {"allow_missing": True, "max_train_per_task": 1000}
PROTOCOL = {"epochs": 15, "lr": 0.05}
SCALE = [
    "3 tasks (FaceScrub, MNIST, CIFAR10)",
    "at most 1,000 training samples per task",
    "at most 15 epochs per task",
    "seed 0",
    "Missing data sets: CIFAR100, SVHN",
    "FaceScrub 20 of 100 people (580 training images)",
    "CIFAR10 8% of its training set (4,000 of 50,000)",
    "Not the paper's full protocol",
    "3 of the paper's 8 tasks (CIFAR100 and SVHN missing)",
    "FaceScrub, CIFAR10 only in part",
    "≤ 15 epochs per task (paper: up to 200)",
    "≤ 1,000 training samples per task (paper: all)",
]


def _mixture(tmp_path) -> str:
    store = Store(tmp_path / "mix.db")
    for strategy in ("sgd", "hat", "joint", "random"):
        store.save(
            RunRecord(
                f"{strategy}-0",
                strategy,
                "mixture",
                0,
                {},
                dict(PROTOCOL),
                dict(OPTIONS),
                "finished",
                matrix(strategy, 0),
                data=copy.deepcopy(MIXTURE_DATA),
            )
        )
    return str(tmp_path / "mix.db")


def _report(store, *args):
    res = CliRunner().invoke(main, ["report", "--store", store, *args])
    assert res.exit_code == 0, res.output
    return res.stdout


def test_markdown_states_the_scale_the_verdict_and_the_footer(tmp_path):
    store = _mixture(tmp_path)
    md = _report(store, "--paper")
    assert (
        "### mixture (allow_missing=True, max_train_per_task=1000), ≤ 15 epochs (T = 3), not the paper's protocol" in md
    )
    for words in SCALE:
        assert words in md, words
    assert re.search(
        r"Made by cl-bench \d+\.\d+\.\d+\S* from the store "
        + re.escape(store)
        + r" on \d{4}-\d\d-\d\d \d\d:\d\d UTC\.",
        md,
    )
    comparison = md[md.index("ours beside the paper's") :]  # the paper's numbers come with our scale
    assert "Not the paper's full protocol" in comparison and "| hat |" in comparison


def test_latex_is_pure_latex_and_states_the_scale(tmp_path):
    tex = _report(_mixture(tmp_path), "--latex", "--paper")
    assert not any(line.startswith(("|", "#", "###")) for line in tex.splitlines())  # no markdown
    assert "\\caption{Ours beside the paper's published numbers" in tex
    captions = re.findall(r"\\caption\{(.*)\}", tex)
    assert len(captions) == 2 and all("Not the paper's full protocol" in c for c in captions)
    assert "at most 1,000 training samples per task" in captions[0]
    assert "$\\leq$ 15 epochs" in captions[0] and "CIFAR10 8\\% of its training set" in captions[0]
    assert tex.count("\\begin{table}") == tex.count("\\end{table}") == 2
    assert re.search(r"^% Made by cl-bench .* from the store ", tex, re.M)
    assert "\\texttt" not in tex and "`" not in tex


def test_html_has_provenance_first_a_contents_and_the_paper_comparison(tmp_path):
    out = tmp_path / "r.html"
    _report(_mixture(tmp_path), "--html", str(out), "--paper")
    html = out.read_text()
    prov, toc, first_section = (html.index("class=prov"), html.index("<nav class=toc>"), html.index("<h2 id='s1'>"))
    assert prov < toc < first_section
    head = html[prov:toc]
    assert "Made by cl-bench" in head and "mix.db" in head
    assert "Not the paper&#x27;s full protocol" in head and "Missing data sets: CIFAR100, SVHN" in head
    assert "href='#s1-paper'" in html and "Ours beside the paper's</h3>" in html
    assert "<td>-0.06</td>" in html  # Table 1's rho<=8 of HAT, beside ours
    n_figures = html.count("<img ")
    assert n_figures == html.count("<figcaption>") >= 3
    assert all("Not the paper&#x27;s full protocol" in c for c in re.findall(r"<figcaption>(.*?)</figcaption>", html))
    assert html.count("<footer>Made by cl-bench") == 1


def test_figure_titles_and_captions_state_the_scale(tmp_path):
    store = Store(_mixture(tmp_path))
    drawn = 0
    for item in build_figures(analyse(store.query())):
        assert "Not the paper's full protocol" in item.caption and "at most 1,000 training samples" in item.caption
        if item.figure is not None:
            titles = " ".join(ax.get_title() for ax in item.figure.axes) + (
                item.figure._suptitle.get_text() if item.figure._suptitle else ""
            )
            titles = " ".join(titles.split())  # the scale line is wrapped
            assert "≤ 1,000 samples/task" in titles and "not the paper's protocol" in titles, item.name
            drawn += 1
            plt.close(item.figure)
    assert drawn >= 3


def test_the_papers_full_protocol_is_named_as_such(tmp_path):
    store = Store(tmp_path / "s.db")
    data = {
        "datasets": {"MNIST": {"complete": True, "files": {"x": "dd" * 32}}},
        "tasks": [
            {"name": "mnist-0-4", "classes": 5, "train": 30596, "valid": 30596, "test": 5139},
            {"name": "mnist-5-9", "classes": 5, "train": 29404, "valid": 29404, "test": 4861},
        ],
    }
    for strategy, epochs in [("hat", 200), ("joint", 200), ("random", 200), ("sgd", 20)]:
        store.save(
            RunRecord(
                f"{strategy}-{epochs}",
                strategy,
                "split_mnist",
                0,
                {},
                {"epochs": epochs},
                {},
                "finished",
                matrix(strategy, 0)[:2, :2],
                data=data,
            )
        )
    md = _report(str(tmp_path / "s.db"), "--paper")
    assert "### split_mnist, ≤ 200 epochs (T = 2), the paper's full protocol" in md
    assert "This is the paper's full protocol." in md
    # the 20-epoch run (as r2) is its own table, never under a plain split_mnist header
    assert "### split_mnist, ≤ 20 epochs (T = 2), not the paper's protocol" in md
    assert "Not the paper's full protocol: ≤ 20 epochs per task (paper: up to 200)." in md


def test_task_order_is_stated_per_seed_when_the_seeds_order_the_mixture_differently(tmp_path):
    store = Store(_mixture(tmp_path))
    data = copy.deepcopy(MIXTURE_DATA)
    data["tasks"] = data["tasks"][1:] + data["tasks"][:1]  # seed 1 draws another order
    for strategy in ("sgd", "hat", "joint", "random"):
        store.save(
            RunRecord(
                f"{strategy}-1", strategy, "mixture", 1, {}, dict(PROTOCOL), dict(OPTIONS), "finished",
                matrix(strategy, 1), data=data,
            )
        )  # fmt: skip
    md = _report(str(tmp_path / "mix.db"))
    assert "Scale: 3 tasks, at most 1,000" in md  # columns are positions, not data sets
    assert "Task order by seed: seed 0: FaceScrub, MNIST, CIFAR10; seed 1: MNIST, CIFAR10, FaceScrub." in md
    one_seed = _report(str(tmp_path / "mix.db"), "--seeds", "1")
    assert "Scale: 3 tasks (MNIST, CIFAR10, FaceScrub)" in one_seed and "Task order by seed" not in one_seed
