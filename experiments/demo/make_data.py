"""Build the embedded demo data set: support-message routing for a fictional mobile operator, Northwind Mobile.

The task stands in for the mission's "the model does not know our jargon": each customer message must be
mapped to the operator's internal queue code and the plan it mentions, e.g.

    "I'm flying to Lisbon on Friday, can I use my Flex 10 plan there?"  ->  "ROAM-ACTIVATE | plan=Flex 10"

Messages are written from hand-made templates (below) filled with random slots; nothing is copied from a
real data set. The queue codes are invented, so a base model cannot know them: before fine-tuning, exact
match is ~0 by construction, and the gain measures what LoRA learned from a few hundred examples.
Held-out honesty: one template per queue never appears in training; the test split draws 40% of its rows
from those unseen phrasings, the rest from new slot fillings of seen ones. Validation has the seen
templates only (it drives early stopping); test is used once, before and after.

    python experiments/demo/make_data.py   # writes experiments/demo/data/{train,validation,test}.jsonl
"""

from __future__ import annotations

import json
import random
from pathlib import Path

PLANS = ["Flex 10", "Flex 25", "Flex Unlimited", "Business Pro", "Family Share", "Student Go"]
CITIES = ["Lisbon", "Toronto", "Nairobi", "Osaka", "Lima", "Oslo", "Cairo", "Denver", "Hanoi", "Krakow"]
DAYS = ["Friday", "next week", "tomorrow", "on the 14th", "this weekend", "in March"]
PHONES = ["Pixel 8", "iPhone 15", "Galaxy S23", "Moto G54", "Nokia X30"]
AREAS = ["downtown", "the north side", "my street", "Riverside", "the business park"]
CARRIERS = ["Contoso Tel", "Fabrikam Wireless", "Tailspin Mobile"]
OPENINGS = ["", "Hi, ", "Hello team, ", "Quick question: ", "Good morning. ", "Hey - "]
CLOSINGS = ["", " Thanks.", " Please help.", " Cheers", " Thank you!"]

# (queue code, templates); the LAST template of each queue is held out of training.
QUEUES = {
    "BILL-DISPUTE": [
        "I was charged twice this month on my {plan} plan, please fix it.",
        "My bill shows an extra ${n} I never agreed to.",
        "Why is my {plan} invoice higher than last month?",
        "There's a charge on my account I don't recognise.",
        "You billed me for {n} GB of data I didn't use on {plan}.",
        "hello, the amount taken for {plan} from my card is wrong again",
    ],
    "ROAM-ACTIVATE": [
        "I'm flying to {city} {day}, can I use my {plan} plan there?",
        "Will my phone work in {city}? I leave {day}.",
        "Please turn on roaming before my trip to {city}.",
        "Travelling to {city} {day} with {plan}, what do I need to do?",
        "Is international data included in {plan} when I'm in {city}?",
        "going abroad {day}, need my number to work in {city}",
    ],
    "SIM-SWAP": [
        "I lost my SIM card, can you send a new one?",
        "My {phone} says no SIM after I dropped it.",
        "I want to move my {plan} line to an eSIM on my new {phone}.",
        "The SIM card is damaged and won't read anymore.",
        "Need a replacement SIM for my {plan} account, the old one broke.",
        "{phone} keeps saying invalid sim since this morning",
    ],
    "NET-OUTAGE": [
        "No signal at all in {area} since this morning.",
        "Calls keep dropping around {area}, is there an outage?",
        "Mobile data stopped working in {area} on my {plan} line.",
        "Is the network down in {area}? Nothing loads.",
        "My {phone} shows zero bars in {area} for two days.",
        "internet on my phone is dead near {area}, anyone else?",
    ],
    "PLAN-UPGRADE": [
        "I keep running out of data, can I upgrade from {plan}?",
        "What would it cost to move to a bigger plan than {plan}?",
        "Please switch me from {plan} to something with more data.",
        "I want more gigabytes every month, what are my options?",
        "Can I add {n} GB to my {plan} plan permanently?",
        "thinking of leaving {plan} for unlimited, how do I change my package",
    ],
    "PORT-IN": [
        "I want to bring my number over from {carrier}.",
        "How do I transfer my existing number from {carrier} to {plan}?",
        "Switching from {carrier}, can I keep my phone number?",
        "Please port my number in, I'm leaving {carrier}.",
        "I signed up for {plan} and want my old {carrier} number moved.",
        "keeping my old {carrier} number when I join you, possible?",
    ],
    "DEVICE-REPAIR": [
        "The screen on my {phone} cracked, is it covered?",
        "My {phone} won't charge anymore, can you repair it?",
        "The battery on my {phone} dies in two hours.",
        "I dropped my {phone} in water, what are my repair options?",
        "Can I book a repair for my {phone} bought with {plan}?",
        "the {phone} you sold me stopped turning on",
    ],
    "CANCEL-RETAIN": [
        "I want to cancel my {plan} contract.",
        "How do I end my service? I'm moving to {carrier}.",
        "Please close my account at the end of the month.",
        "What's the fee to cancel {plan} early?",
        "I'm not happy and want to leave, cancel {plan} please.",
        "done with {plan}, how do I quit",
    ],
}
SIZES = {"train": 320, "validation": 48, "test": 96}
HELD_OUT_SHARE = 0.4


def fill(template: str, rng: random.Random) -> tuple[str, str]:
    plan = rng.choice(PLANS)
    text = template.format(plan=plan, city=rng.choice(CITIES), day=rng.choice(DAYS), phone=rng.choice(PHONES),
                           area=rng.choice(AREAS), carrier=rng.choice(CARRIERS), n=rng.choice([5, 12, 20, 45]))
    text = rng.choice(OPENINGS) + text + rng.choice(CLOSINGS)
    return text, (plan if "{plan}" in template else "unknown")


def example(code: str, template: str, rng: random.Random) -> dict:
    text, plan = fill(template, rng)
    return {"prompt": f"Route this Northwind Mobile support message.\nMessage: {text}\nRoute:",
            "completion": f" {code} | plan={plan}"}


def build(seed: int = 0) -> dict[str, list[dict]]:
    rng = random.Random(seed)
    codes = list(QUEUES)
    out: dict[str, list[dict]] = {name: [] for name in SIZES}
    seen: set[str] = set()
    attempts = 0
    for name, size in SIZES.items():
        while len(out[name]) < size:
            code = codes[len(out[name]) % len(codes)]
            templates = QUEUES[code]
            held_out = name == "test" and rng.random() < HELD_OUT_SHARE
            row = example(code, templates[-1] if held_out else rng.choice(templates[:-1]), rng)
            if name == "test":  # lets the demo report seen and unseen phrasings separately
                row["phrasing"] = "unseen" if held_out else "seen"
            if row["prompt"] in seen:  # no message appears in two splits (or twice in one)
                attempts += 1
                if attempts > 100_000:
                    raise RuntimeError(f"templates too few to fill {name} with {size} distinct messages")
                continue
            seen.add(row["prompt"])
            out[name].append(row)
        rng.shuffle(out[name])
    return out


def main() -> None:
    folder = Path(__file__).parent / "data"
    folder.mkdir(exist_ok=True)
    for name, rows in build().items():
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        print(f"{name}: {len(rows)} rows")


if __name__ == "__main__":
    main()
