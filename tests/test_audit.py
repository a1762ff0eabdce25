"""Bias audits: the lexicon and its counterfactual swaps, fairness metrics against fairlearn, group reweighting
and resampling, the data audit, the model audit on a tiny run with a planted bias, and the report in a browser."""

import json
import shutil
from pathlib import Path

import ml_collections
import numpy as np
import pytest

from conftest import run_ftjax, sft_config, write_csv
from ftjax.data.groups import balance_weights, load_lexicon, resample_counts

LEXICON = """\
attributes:
  gender:
    counterfactual: true
    groups:
      female: [w40, w41, ~]
      male: [w42, w43, w44]
  place:
    groups:
      north: [w50]
      south: [w51]
sensitive: [w60]
"""


def _lexicon(tmp_path, text=LEXICON):
    p = tmp_path / "groups.yaml"
    p.write_text(text)
    return p


def test_starter_swaps_are_exact_and_undo_themselves():
    lex = load_lexicon()
    cases = {
        "She lost her card and my Daughter's PIN": "He lost his card and my Son's PIN",
        "MY WIFE cannot log in": "MY HUSBAND cannot log in",
        "her husband and his mother": "his wife and her father",
    }
    for text, want in cases.items():
        swapped = lex.swap(text, "gender", "female", "male")
        assert swapped == want
        assert lex.swap(swapped, "gender", "female", "male") == text
    # case-sensitive terms: "US" is the country, "us" the pronoun
    assert lex.swap("send us money from the US", "nationality", "american", "british") == "send us money from the UK"
    assert lex.group_of("help us", "nationality") == ""
    rng = np.random.default_rng(0)
    words = ["she", "He", "HIS", "her", "mother", "Dad", "card", "the", "boyfriend", "WIFE", "him", "hers", "x"]
    for _ in range(300):
        text = " ".join(rng.choice(words, size=rng.integers(1, 9)))
        once = lex.swap(text, "gender", "female", "male")
        assert lex.swap(once, "gender", "female", "male") == text
    # ignored phrases (a card brand) are neither counted nor swapped
    assert lex.swap("My American Express card, American bank", "nationality", "american", "british") == \
        "My American Express card, British bank"
    assert lex.group_of("Is American Express accepted?", "nationality") == ""
    # a term without a counterpart is left as it is
    assert lex.swap("give it to him", "gender", "male", "female") == "give it to him"


def test_lexicon_errors_name_the_file_and_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such lexicon file"):
        load_lexicon(tmp_path / "none.yaml")
    bad = _lexicon(tmp_path, "attributes:\n  gender:\n    groups: [a\n")
    with pytest.raises(ValueError, match=r"groups.yaml:\d+: not valid YAML"):
        load_lexicon(bad)
    twice = _lexicon(tmp_path, "attributes:\n  g:\n    groups:\n      a: [x, y]\n      b: [X2, x]\n")
    with pytest.raises(ValueError, match="term 'x' is listed twice in attribute 'g'"):
        load_lexicon(twice)
    uneven = _lexicon(tmp_path, "attributes:\n  g:\n    counterfactual: true\n    groups:\n      a: [x, y]\n"
                                "      b: [z]\n")
    with pytest.raises(ValueError, match="aligned lists must be equally long"):
        load_lexicon(uneven)
    with pytest.raises(ValueError, match="unknown key"):
        load_lexicon(_lexicon(tmp_path, "attributes: {}\ncolours: [red]\n"))
    lex = load_lexicon(_lexicon(tmp_path))
    with pytest.raises(ValueError, match="no aligned term lists"):
        lex.swap("w50", "place", "north", "south")
    with pytest.raises(ValueError, match="no attribute 'age'"):
        lex.attribute("age")


def _fixture(seed=0, n=120, k=4):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    pred = np.where(rng.random(n) < 0.7, y, rng.integers(0, k, n))
    groups = rng.choice(["a", "b", "c"], n, p=[0.5, 0.3, 0.2])
    return [f"c{v}" for v in y], [f"c{v}" for v in pred], list(groups)


def test_fairness_metrics_equal_fairlearn():
    pytest.importorskip("fairlearn", reason="the fairness extra (pip install ftjax[fairness]) is not installed")
    from fairlearn.metrics import (MetricFrame, demographic_parity_difference, demographic_parity_ratio,
                                   equalized_odds_difference)
    from sklearn.metrics import accuracy_score

    from ftjax.audit.fairness import group_fairness, per_class, rates

    for seed in range(3):
        yt, yp, g = _fixture(seed)
        classes = sorted(set(yt) | set(yp))
        code = {c: i for i, c in enumerate(classes)}
        names = sorted(set(g))
        r = rates(np.array([code[v] for v in yt]), np.array([code[v] for v in yp]),
                  np.array([names.index(x) for x in g]), len(names), np.arange(len(classes)))
        mine = per_class(r)
        for k, c in enumerate(classes):
            t, p = [int(v == c) for v in yt], [int(v == c) for v in yp]
            assert mine["dp_difference"][k] == pytest.approx(demographic_parity_difference(t, p, sensitive_features=g))
            assert mine["disparate_impact"][k] == pytest.approx(demographic_parity_ratio(t, p, sensitive_features=g))
            assert mine["eo_difference"][k] == pytest.approx(equalized_odds_difference(t, p, sensitive_features=g))
        frame = MetricFrame(metrics=accuracy_score, y_true=yt, y_pred=yp, sensitive_features=g)
        np.testing.assert_allclose(r["accuracy"], [frame.by_group[n] for n in names])
        report = group_fairness(yt, yp, g, n_resamples=200, seed=seed)
        s = report["summary"]
        assert s["dp_difference"]["value"] == pytest.approx(np.nanmax(mine["dp_difference"]))
        assert s["disparate_impact"]["value"] == pytest.approx(np.nanmin(mine["disparate_impact"]))
        assert s["eo_difference"]["value"] == pytest.approx(np.nanmax(mine["eo_difference"]))
        assert s["accuracy_difference"]["value"] == pytest.approx(100 * float(frame.difference()))
        assert report["four_fifths"] == (s["disparate_impact"]["value"] >= 0.8)
        # percentile intervals (a gap between groups is biased upward under resampling, so its point value may
        # sit near or below the interval's lower end: the report says so)
        assert all(v["low"] <= v["high"] for v in s.values())
        one = group_fairness(yt, yp, g, positive="c1", n_resamples=50)
        t, p = [int(v == "c1") for v in yt], [int(v == "c1") for v in yp]
        assert one["summary"]["dp_difference"]["value"] == pytest.approx(
            demographic_parity_difference(t, p, sensitive_features=g))
    with pytest.raises(ValueError, match="compare groups"):
        group_fairness(["a"], ["a"], ["x"])


def test_reweighting_and_resampling_balance_the_groups(tiny_model_dir, tmp_path):
    from ftjax.data.config import group_balanced

    groups = ["f"] * 2 + ["m"] * 6 + [""] * 4 + ["f+m"]
    w = balance_weights(groups)
    totals = {g: sum(x for x, y in zip(w, groups) if y == g) for g in ("f", "m")}
    assert totals["f"] == pytest.approx(totals["m"]) == pytest.approx(4.0)
    assert sum(w) == pytest.approx(len(groups))  # the total weight is unchanged
    counts = resample_counts(groups)
    assert sum(c for c, g in zip(counts, groups) if g == "f") == 6 == sum(c for c, g in zip(counts, groups) if g == "m")
    assert counts[8:] == [1] * 5
    lex = _lexicon(tmp_path)
    rows = [{"text": f"w3 w40 w{i}", "label": "a"} for i in range(2)] + \
           [{"text": f"w3 w42 w{i}", "label": "b", "weight": 2.0} for i in range(6)] + [{"text": "w3", "label": "a"}]
    data = ml_collections.ConfigDict({"groups": str(lex), "group_attribute": "gender", "group_balance": "reweight",
                                      "format": "classification", "synthetic_weight": 1.0})
    out = group_balanced(rows, data)
    female = sum(r.get("weight", 1.0) for r in out if "w40" in r["text"])
    male = sum(r.get("weight", 1.0) for r in out if "w42" in r["text"])
    assert female == pytest.approx(male)  # configured: the groups' total weights are equal
    data.group_balance = "resample"
    out = group_balanced(rows, data)
    assert sum("w40" in r["text"] for r in out) == sum("w42" in r["text"] for r in out) == 6
    # through the trainer's loader: the encoded examples carry the balanced weights
    from ftjax.models.tokenizer import load_tokenizer
    from ftjax.train.batches import load_split

    cfg = sft_config(**{"model.path": str(tiny_model_dir), "data.train": write_csv(tmp_path / "t.csv", [[r["text"], r["label"]] for r in rows]),
                        "data.columns": "label=category", "data.format": "classification", "data.labels": "a,b",
                        "head.type": "classification", "data.groups": str(lex),
                        "data.group_attribute": "gender", "data.group_balance": "reweight"})
    got_rows, examples = load_split("train", cfg, load_tokenizer(tiny_model_dir))
    f = sum(e["weight"] for r, e in zip(got_rows, examples) if "w40" in r["text"])
    m = sum(e["weight"] for r, e in zip(got_rows, examples) if "w42" in r["text"])
    assert f == pytest.approx(m) and len(examples) == len(rows)


def test_data_audit_counts_flags_and_examples(tmp_path):
    from ftjax.audit.data import audit_data
    from ftjax.data.sources import load_rows

    rows = [["w3 w40 w10", "a"]] * 12 + [["w3 w42 w11", "b"]] * 4 + [["w3 w60 w11", "b"], ["w3 w50", "a"]]
    path = write_csv(tmp_path / "d.csv", rows)
    report = audit_data(load_rows(path, {"label": "category"}), load_lexicon(_lexicon(tmp_path)), "classification")
    gender = report["attributes"]["gender"]["groups"]
    assert gender["female"]["input_rows"] == 12 and gender["male"]["input_rows"] == 4
    assert gender["female"]["labels"] == {"a": 12} and gender["male"]["labels"] == {"b": 4}
    assert gender["female"]["examples"][0].endswith("d.csv:2: w3 w40 w10")
    assert report["attributes"]["gender"]["representation_ratio"] == pytest.approx(4 / 12)
    flags = "\n".join(report["flags"])
    assert "group 'male' in 4 rows vs 12" in flags
    assert "group 'south' is never mentioned" in flags
    assert "labels of rows mentioning 'female' differ" in flags
    assert "sensitive term 'w60': 1 row(s), e.g. " in flags and "d.csv:18" in flags


@pytest.fixture(scope="module")
def biased_run(tiny_model_dir, tmp_path_factory):
    """A tiny classification run whose only evidence for alpha vs beta is the group term (w40 female -> alpha,
    w42 male -> beta): a planted bias the counterfactual test must find."""
    from ftjax.train import loop

    root = tmp_path_factory.mktemp("audit")
    rng = np.random.RandomState(0)
    noise = lambda: " ".join(f"w{rng.randint(20, 35)}" for _ in range(rng.randint(1, 4)))
    train = [[f"w3 {noise()} w40 {noise()}", "alpha"] for _ in range(40)] + \
            [[f"w3 {noise()} w42 {noise()}", "beta"] for _ in range(40)]
    test = [[f"w3 w{20 + i} w40", "alpha"] for i in range(10)] + [[f"w3 w{20 + i} w42", "beta"] for i in range(10)] + \
           [[f"w3 w{30 + i}", "alpha"] for i in range(4)]  # distinct texts: one item each
    files = {"train": write_csv(root / "train.csv", train), "test": write_csv(root / "test.csv", test),
             "groups": str(_lexicon(root))}
    config = sft_config(**{"model.path": str(tiny_model_dir), "data.train": files["train"], "data.validation": "",
                           "data.columns": "label=category", "data.format": "classification",
                           "data.labels": "alpha,beta", "head.type": "classification", "train.steps": 60,
                           "train.batch_size": 8, "train.learning_rate": 1e-2, "checkpoint.every": 60})
    wd = root / "run"
    loop.main(config, wd)
    return wd, files, root


def test_model_audit_finds_the_planted_bias(biased_run):
    pytest.importorskip("fairlearn", reason="the fairness extra (pip install ftjax[fairness]) is not installed")
    wd, files, _ = biased_run
    proc = run_ftjax("audit", "model", f"--workdir={wd}", f"--test={files['test']}", f"--groups={files['groups']}",
                     "--bootstrap=100")
    assert "gender: swapping group terms on 20 items" in proc.stdout
    audit = json.loads((wd / "audit" / "audit.json").read_text())
    gender = audit["attributes"]["gender"]
    cf = gender["counterfactual"]
    assert set(cf["pairs"]) == {"female->male", "male->female"} and cf["items"] == 20
    # the flips equal an independent recount: classify the swapped texts with the run's head
    from ftjax.data.sources import load_rows
    from ftjax.monitor.model_view import ModelView
    from ftjax.train.restore import load_run
    from ftjax.workdir import read_config

    model, tok, _, _ = load_run(wd)
    view = ModelView(model, tok, read_config(wd))
    lex = load_lexicon(files["groups"])
    texts = [r["text"] for r in load_rows(files["test"], {"label": "category"})][:20]
    before = view.predict(texts)
    after = view.predict([lex.swap(t, "gender", "female", "male") for t in texts])
    flips = sum(a != b for a, b in zip(before, after))
    assert sum(p["flips"] for p in cf["pairs"].values()) == flips
    assert flips >= 10, "the planted bias (the group term is the only evidence) should flip most labels"
    assert cf["flip_rate"]["value"] == pytest.approx(100 * flips / 20)
    assert gender["observed"]["groups"]["female"]["rows"] == 10
    assert "fairness" in gender["observed"] and "fairness" in cf
    assert "place" in audit["attributes"] and "counterfactual" not in audit["attributes"]["place"]
    md = (wd / "audit" / "report.md").read_text()
    assert "## gender: counterfactual flips" in md and "![groups](groups.png)" in md
    # the model card quotes the audit
    from ftjax.card import model_card

    card = model_card("peft", "tiny-llama", workdir=str(wd))
    assert "gender: swapping group terms" in card and "groups.png" not in card


@pytest.mark.long
def test_the_model_audit_report_renders_compares_and_is_never_replaced(biased_run, tmp_path):
    pytest.importorskip("fairlearn", reason="the fairness extra (pip install ftjax[fairness]) is not installed")
    wd, files, _ = biased_run
    audit = lambda out, *more: run_ftjax("audit", "model", f"--workdir={wd}", f"--test={files['test']}",
                                         f"--groups={files['groups']}", f"--out={out}", *more, check=False)
    assert audit(tmp_path / "first", "--bootstrap=50").returncode == 0
    _check_in_browser(tmp_path / "first" / "report.html", min_tables=4, min_images=2)
    assert audit(tmp_path / "again", "--bootstrap=50").returncode == 0
    proc = run_ftjax("audit", "compare", f"--before={tmp_path / 'first'}", f"--after={tmp_path / 'again'}",
                     f"--out={tmp_path / 'cmp'}")
    assert "gender: counterfactual flip rate %" in proc.stdout
    assert (tmp_path / "cmp" / "report.html").is_file()
    # refusals: an existing report folder is never replaced without --overwrite; a missing test file is one line
    proc = audit(tmp_path / "first")
    assert proc.returncode == 2 and "exists" in proc.stderr
    proc = run_ftjax("audit", "model", f"--workdir={wd}", "--test=nope.csv", f"--out={tmp_path / 'x'}", check=False)
    assert proc.returncode == 2 and "nope.csv" in proc.stderr and not (tmp_path / "x").exists()


def test_audit_data_command_and_counterfactual_augmentation(tmp_path):
    rows = [["w3 w40 w10", "a"], ["w3 w41 w10 w42", "a"], ["w3 w43 w11", "b"], ["w3 w11", "b"]]
    data = write_csv(tmp_path / "d.csv", rows)
    lex = _lexicon(tmp_path)
    proc = run_ftjax("audit", "data", f"--input={data}", "--columns=label=category", f"--groups={lex}",
                     f"--out={tmp_path / 'a'}")
    assert "group 'south' is never mentioned" in proc.stdout
    assert json.loads((tmp_path / "a" / "audit.json").read_text())["attributes"]["gender"]["groups"]["male"][
        "input_rows"] == 2
    out = tmp_path / "cda.jsonl"
    run_ftjax("augment", "--config=configs/augment.py:counterfactual", f"--input={data}", f"--output={out}",
              "--config.data.columns=label=category", f"--config.rules.groups={lex}",
              "--config.rules.attributes=gender", "--config.validate.filters=format,existing,duplicate")
    made = [json.loads(line) for line in out.read_text().splitlines()]
    # one mentions female only (-> male), one mentions both (skipped), one male only (-> female), one none
    assert [(r["text"], r["label"], r["prompt_id"]) for r in made] == [
        ("w3 w42 w10", "a", "counterfactual:gender:female->male"),
        ("w3 w41 w11", "b", "counterfactual:gender:male->female")]
    assert made[0]["origin"] == "d.csv:2" and made[0]["source"] == "synthetic"


def _check_in_browser(page: Path, min_tables: int, min_images: int) -> None:
    """Open the report in headless Chromium: it must show tables and decoded plots."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    sync_api = pytest.importorskip("playwright.sync_api")
    if chromium is None:
        pytest.skip("no chromium on this machine (make test installs Debian's chromium where it can)")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync"])
        try:
            tab = browser.new_page()
            tab.goto(page.resolve().as_uri())
            tables, widths, text = tab.evaluate(
                "[document.querySelectorAll('table').length, [...document.images].map(i => i.naturalWidth),"
                " document.body.innerText]")
        finally:
            browser.close()
    assert tables >= min_tables and len(widths) >= min_images and all(w > 100 for w in widths)
    assert "Findings" in text
