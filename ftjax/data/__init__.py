"""Data for fine-tuning: `sources.load_rows` (files, Hugging Face datasets, TFDS), `formats.encode` (token ids
and loss masks), `pipeline.Batches` (grain batches, packed or padded), and the curation, split and stats tools
behind `ftjax data` (curate.py, split.py, stats.py). Modules are imported on use so the command starts fast."""
