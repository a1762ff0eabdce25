"""Synthetic examples for a low-resource classification set (`ftjax augment`).

    ftjax augment --config=configs/augment.py --input=SEEDS.csv --output=synthetic.jsonl \
        [--config.data.test=TEST.csv] [--config.model.workdir=RUN]

Model rows come from model.path (a folder, hub id or .gguf) or, when model.workdir is set, a fine-tuned run (its
adapter on). Variants (`configs/augment.py:VARIANT`): `rules` (noise and swaps only, no model), `counterfactual`
(counterfactual data augmentation for bias mitigation: every row that mentions a group of the lexicon, once per
other group, its group terms swapped; no model), `sft` (prompt /
completion seeds: new prompts and their completions), `tiny` (the shape the tests use; model given on the
command line). The rows of --output carry `source: synthetic`, `method`, `generator`, `prompt_id`, `seed` and
`origin`; train on them with data.synthetic_weight to weigh them against the real rows.
"""

import ml_collections

MODEL = "models/gemma-3-270m-q4_k_m.gguf"
VARIANTS = ("rules", "counterfactual", "sft", "tiny")

# Prompts for a base (not instruction-tuned) model such as Gemma 3 270M: a list to continue, so the next line the
# model writes is a new item; with an instruction-tuned model, model.chat=True and instructions work too.
CLASSIFICATION = {
    "paraphrase": "The same bank customer question, asked in different words:\n- {text}\n-",
    "new": "Messages that bank customers sent about {label_words}:\n{examples}\n-",
    "target": "{prompt}",
}
SFT = {
    "paraphrase": "The same request, in different words:\n- {text}\n-",
    "new": "Example requests:\n{examples}\n-",
    "target": "{prompt}",
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    if arg and arg not in VARIANTS:
        raise ValueError(f"unknown configs/augment.py variant {arg!r}; choose from: {', '.join(VARIANTS)}")
    c = ml_collections.ConfigDict()
    c.model = ml_collections.ConfigDict(dict(path=MODEL, workdir="", dtype="float32", chat=False))
    # format: classification (text, label) | prompt_completion; columns maps ours=theirs (label=category)
    c.data = ml_collections.ConfigDict(dict(format="classification", columns="label=category", test=""))
    c.augment = ml_collections.ConfigDict(dict(
        methods="paraphrase,new", per_seed=1, new=5, shots=4,
        templates=dict(CLASSIFICATION if arg != "sft" else SFT)))
    # top_k rather than top_p: a full sort of a 262k vocabulary every step costs more than the model on a CPU;
    # one_line: stop at the first newline (a row is one line)
    c.sampling = ml_collections.ConfigDict(dict(temperature=0.9, top_p=1.0, top_k=40, max_new_tokens=32, seed=0,
                                                batch_size=32, one_line=True))
    # noise: typos,casing,punctuation (each row gets every listed kind); files for swaps (JSON, see rules.py)
    # counterfactual (CDA): group terms swapped, from a lexicon (groups; '' = ftjax's starter set) and its
    # attributes ('' = every attribute with aligned lists)
    c.rules = ml_collections.ConfigDict(dict(per_seed=1, noise="typos", rate=0.15, synonyms="", entities="",
                                             groups="", attributes=""))
    # filters (ftjax/augment/validate.py): all by default; label: tfidf | model (label_workdir's head) | none
    c.validate = ml_collections.ConfigDict(dict(
        filters="format,quality,test_leak,existing,duplicate,label", near_threshold=0.8, min_words=2,
        max_words=60, min_letter_ratio=0.5, max_char_run=8, label="tfidf", label_workdir="", label_threshold=0.2))
    if arg == "rules":
        c.augment.methods = "rules"
    elif arg == "counterfactual":
        c.augment.methods = "counterfactual"
        # a swapped row keeps its label by construction; a label check fitted on the unswapped rows would only
        # remove rows whose group words it had learned to read as label evidence, which is the bias to undo
        c.validate.label = "none"
        # and a swap changes a word or two, so the near-duplicate checks against the real rows and among the
        # synthetic ones would remove every row: format, quality and the test-leak check only
        c.validate.filters = "format,quality,test_leak"
    elif arg == "sft":
        c.data.update(format="prompt_completion", columns="")
        c.validate.label = "none"
    elif arg == "tiny":
        c.model.path = ""
        c.data.columns = ""
        c.augment.update(new=2, shots=2)
        c.sampling.update(max_new_tokens=6, batch_size=4)
        c.validate.update(min_words=1, label="none")
    return c
