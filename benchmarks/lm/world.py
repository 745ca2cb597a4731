"""The language mini-world: a small synthetic world of animals, tools and daily routines.

Everything here is generated from fixed seeds, so the training corpus of the zoo language models
(benchmarks/zoo/models/llm.py), the held-out perplexity text and the seven local zero-shot tasks shipped
in benchmarks/lm_tasks/ all describe the same world. The world has facts (an animal's colour, home,
food, size) and commonsense-like regularities (animals of the river can swim, meat eaters are hunters,
a knife cuts bread, a routine's steps come in order, "X chased Y because _ was hungry" points at X),
so the tasks are answerable by a model that learned the corpus and not by one that did not.

Task shapes follow the stock lm-eval tasks (field names and prompts):
  boolq (passage/question/label, acc), piqa (goal/sol1/sol2/label), hellaswag (activity_label/ctx/
  endings/label, 4 endings), winogrande (sentence with "_", option1/option2/answer, partial scoring; the
  blank is resolved by knowledge of the two animals), 
  arc_easy / arc_challenge (question/choices{text,label}/answerKey; the challenge set needs two hops),
  openbookqa (question_stem/choices/answerKey; rules of the world applied to a case).

Regenerate the shipped files with `python -m benchmarks.lm.world --write` (deterministic).
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

WORLD_SEED = 7
TASK_SEED = 1234
HELDOUT_SEED = 99
DOCS_PER_TASK = 150

ANIMALS = ["fox", "bear", "wolf", "otter", "rabbit", "deer", "eagle", "owl", "frog", "snake", "lizard",
           "camel", "goat", "horse", "duck", "swan", "whale", "shark", "crab", "seal", "tiger", "monkey",
           "parrot", "mole"]
COLORS = ["red", "brown", "grey", "white", "black", "green", "yellow", "orange"]
HABITATS = {"forest": "hide", "river": "swim", "desert": "dig", "farm": "pull carts", "mountain": "climb",
            "sea": "dive", "jungle": "jump", "cave": "see in the dark"}
FOODS = {"grass": "grazer", "leaves": "grazer", "fish": "hunter", "meat": "hunter", "insects": "hunter",
         "seeds": "forager", "fruit": "forager", "nuts": "forager"}
SIZES = {"big": "heavy", "small": "light"}

TOOLS = [
    ("cut", ["the bread", "the rope", "the paper", "the cake"], "a knife"),
    ("dig", ["a hole", "the garden", "the soil"], "a shovel"),
    ("write", ["a letter", "a note", "a story"], "a pen"),
    ("sweep", ["the floor", "the kitchen", "the porch"], "a broom"),
    ("boil", ["the water", "the soup", "the eggs"], "a pot"),
    ("open", ["the door", "the lock", "the gate"], "a key"),
    ("fix", ["the chair", "the table", "the fence"], "a hammer"),
    ("carry", ["the apples", "the sand", "the milk"], "a bucket"),
    ("light", ["the room", "the path", "the tent"], "a lamp"),
    ("wash", ["the dishes", "the car", "the shirt"], "soap and water"),
    ("measure", ["the wall", "the board", "the cloth"], "a ruler"),
    ("sew", ["the coat", "the bag", "the hat"], "a needle"),
    ("water", ["the plants", "the flowers", "the trees"], "a watering can"),
    ("catch", ["a fish", "the trout", "the crab"], "a net"),
]

PEOPLE = ["anna", "ben", "carla", "dan", "emma", "finn", "grace", "hugo", "ida", "jack"]
SCRIPTS = {
    "making tea": ["{p} fills the kettle with water .", "{p} boils the water .", "{p} puts a tea bag in the cup .",
                   "{p} pours the hot water into the cup .", "{p} waits for the tea to cool .", "{p} drinks the tea ."],
    "planting a tree": ["{p} picks a sunny spot .", "{p} digs a deep hole .", "{p} puts the young tree in the hole .",
                        "{p} fills the hole with soil .", "{p} waters the tree .", "{p} watches the tree grow ."],
    "baking bread": ["{p} mixes flour and water .", "{p} kneads the dough .", "{p} lets the dough rise .",
                     "{p} puts the dough in the oven .", "{p} takes the bread out .", "{p} slices the warm bread ."],
    "washing the car": ["{p} fills a bucket with soapy water .", "{p} scrubs the car with a sponge .",
                        "{p} rinses the car with the hose .", "{p} dries the car with a towel .",
                        "{p} polishes the windows .", "{p} drives the clean car away ."],
    "going fishing": ["{p} packs the rod and the bait .", "{p} walks down to the lake .", "{p} throws the line into the water .",
                      "{p} waits for a bite .", "{p} pulls the fish out of the water .", "{p} carries the fish home ."],
    "painting a room": ["{p} moves the furniture away .", "{p} covers the floor with paper .", "{p} opens the can of paint .",
                        "{p} paints the walls with a roller .", "{p} lets the paint dry .", "{p} puts the furniture back ."],
    "doing the laundry": ["{p} sorts the dirty clothes .", "{p} puts the clothes in the machine .", "{p} adds the soap .",
                          "{p} starts the machine .", "{p} hangs the wet clothes to dry .", "{p} folds the dry clothes ."],
    "building a fire": ["{p} gathers dry sticks .", "{p} stacks the sticks in a pile .", "{p} strikes a match .",
                        "{p} lights the small sticks .", "{p} adds bigger logs .", "{p} warms the hands by the fire ."],
    "riding a bike": ["{p} puts on a helmet .", "{p} checks the tires .", "{p} sits on the seat .",
                      "{p} pushes the pedals .", "{p} rides down the road .", "{p} parks the bike at home ."],
    "cooking soup": ["{p} washes the carrots .", "{p} chops the carrots and onions .", "{p} puts the vegetables in the pot .",
                     "{p} adds water and salt .", "{p} stirs the soup while it cooks .", "{p} serves the soup in bowls ."],
    "writing a letter": ["{p} takes out a sheet of paper .", "{p} picks up a pen .", "{p} writes a few kind words .",
                         "{p} signs the letter .", "{p} folds the letter into an envelope .", "{p} posts the letter ."],
    "cleaning the kitchen": ["{p} clears the table .", "{p} washes the dishes .", "{p} wipes the counter .",
                             "{p} sweeps the floor .", "{p} takes out the trash .", "{p} turns off the light ."],
}

# WinoGrande-like schemas: (sentence with {a} {b} and _, adjective phrase -> which of a/b fills the blank)
SCHEMAS = [
    ("the {a} chased the {b} because the _ {x} .", {"was hungry": "a", "was afraid": "b"}),
    ("the {a} could not lift the {b} because the _ {x} .", {"was too heavy": "b", "was too weak": "a"}),
    ("the {a} hid from the {b} because the _ {x} .", {"was scared": "a", "was dangerous": "b"}),
    ("the {a} gave food to the {b} because the _ {x} .", {"was starving": "b", "was generous": "a"}),
    ("the {a} won the race against the {b} because the _ {x} .", {"was faster": "a", "was slower": "b"}),
    ("the {a} thanked the {b} because the _ {x} .", {"was grateful": "a", "was helpful": "b"}),
]


@dataclass(frozen=True)
class Animal:
    name: str
    color: str
    habitat: str
    food: str
    size: str

    @property
    def ability(self) -> str:
        return HABITATS[self.habitat]

    @property
    def diet(self) -> str:
        return FOODS[self.food]


def animals(seed: int = WORLD_SEED) -> list[Animal]:
    """The world's facts. (colour, habitat) pairs are unique, so the two-hop questions have one answer."""
    rng = random.Random(seed)
    pairs = [(c, h) for c in COLORS for h in HABITATS]
    rng.shuffle(pairs)
    out = []
    for i, name in enumerate(ANIMALS):
        c, h = pairs[i]
        out.append(Animal(name, c, h, rng.choice(sorted(FOODS)), rng.choice(sorted(SIZES))))
    return out


# ---------------------------------------------------------------------------------------------
# corpus

def _fact_sentences(a: Animal) -> list[str]:
    n = a.name
    return [
        f"the {n} is {a.color} .", f"the {n} has {a.color} fur .", f"the color of the {n} is {a.color} .",
        f"the {n} lives in the {a.habitat} .", f"you can find the {n} in the {a.habitat} .",
        f"the {a.habitat} is home to the {n} .",
        f"the {n} eats {a.food} .", f"the favorite food of the {n} is {a.food} .",
        f"the {n} is {a.size} .", f"the {n} is a {a.size} animal .",
        f"the {n} can {a.ability} .", f"the {n} is a {a.diet} .", f"the {n} is {SIZES[a.size]} .",
        f"the {a.color} animal that lives in the {a.habitat} is the {n} .",
    ]


def _rule_sentences() -> list[str]:
    out = []
    for h, ab in HABITATS.items():
        out += [f"animals that live in the {h} can {ab} .", f"an animal from the {h} can {ab} ."]
    for f, d in FOODS.items():
        out += [f"animals that eat {f} are {d}s .", f"an animal that eats {f} is a {d} ."]
    for s, w in SIZES.items():
        out += [f"a {s} animal is {w} .", f"{s} animals are {w} ."]
    for verb, objs, tool in TOOLS:
        for o in objs:
            out += [f"to {verb} {o} , use {tool} .", f"if you want to {verb} {o} , you need {tool} .",
                    f"you can {verb} {o} with {tool} ."]
    return out


def _qa_sentences(a: Animal, rng: random.Random) -> list[str]:
    n = a.name
    out = [f"question : what color is the {n} ? answer : {a.color} .",
           f"question : where does the {n} live ? answer : the {a.habitat} .",
           f"question : what does the {n} eat ? answer : {a.food} .",
           f"question : what can the {n} do ? answer : {a.ability} .",
           f"question : what does the {a.color} animal that lives in the {a.habitat} eat ? answer : {a.food} ."]
    return out


_EVIDENCE = {"habitat": 3, "color": 0, "food": 6, "ability": 10}   # index into _fact_sentences


def _passage(a: Animal, rng: random.Random, kind: str) -> str:
    """Three facts about `a`, one of them the evidence for the question (BoolQ: answerable from the passage)."""
    facts = _fact_sentences(a)[:13]
    ev = facts[_EVIDENCE[kind]]
    sents = rng.sample([f for f in facts if f != ev], 2) + [ev]
    rng.shuffle(sents)
    return " ".join(sents)


def _yesno(a: Animal, world: list[Animal], rng: random.Random, kind: str) -> tuple[str, int]:
    truth = rng.random() < 0.5
    others = [b for b in world if b.name != a.name]
    if kind == "habitat":
        h = a.habitat if truth else rng.choice([x for x in HABITATS if x != a.habitat])
        return f"does the {a.name} live in the {h}", int(truth)
    if kind == "color":
        c = a.color if truth else rng.choice([x for x in COLORS if x != a.color])
        return f"is the {a.name} {c}", int(truth)
    if kind == "food":
        f = a.food if truth else rng.choice([x for x in FOODS if x != a.food])
        return f"does the {a.name} eat {f}", int(truth)
    ab = a.ability if truth else rng.choice(sorted({b.ability for b in others} - {a.ability}))
    return f"can the {a.name} {ab}", int(truth)


def _script_text(label: str, p: str) -> str:
    return f"{label} : " + " ".join(s.format(p=p) for s in SCRIPTS[label])


def _schema_sentence(rng: random.Random, world: list[Animal]) -> tuple[str, str, str, str]:
    tmpl, adjs = rng.choice(SCHEMAS)
    a, b = rng.sample([x.name for x in world], 2)
    x = rng.choice(sorted(adjs))
    who = a if adjs[x] == "a" else b
    return tmpl.format(a=a, b=b, x=x), a, b, who


def corpus(n_docs: int = 6000, seed: int = 0) -> list[str]:
    """Training documents (seed 0), held-out text (HELDOUT_SEED), recovery/calibration text (other seeds)."""
    rng = random.Random(seed)
    world = animals()
    rules = _rule_sentences()
    docs = []
    for _ in range(n_docs):
        kind = rng.choices(["facts", "rules", "qa", "rc", "script", "schema", "tools"], [5, 2, 3, 4, 2, 5, 2])[0]
        if kind == "facts":
            a = rng.choice(world)
            docs.append(" ".join(rng.sample(_fact_sentences(a), 4)))
        elif kind == "rules":
            docs.append(" ".join(rng.sample(rules, 4)))
        elif kind == "qa":
            a = rng.choice(world)
            docs.append(" ".join(rng.sample(_qa_sentences(a, rng), 2)))
        elif kind == "rc":
            a = rng.choice(world)
            kind = rng.choice(sorted(_EVIDENCE))
            q, y = _yesno(a, world, rng, kind)
            docs.append(f"{_passage(a, rng, kind)} question : {q} ? answer : {'yes' if y else 'no'} .")
        elif kind == "script":
            docs.append(_script_text(rng.choice(sorted(SCRIPTS)), rng.choice(PEOPLE)))
        elif kind == "schema":
            docs.append(" ".join(_schema_sentence(rng, world)[0] for _ in range(3)))
        else:
            verb, objs, tool = rng.choice(TOOLS)
            o = rng.choice(objs)
            docs.append(f"question : how do you {verb} {o} ? answer : use {tool} . to {verb} {o} , use {tool} .")
    return docs


def heldout_text(n_docs: int = 400) -> str:
    """The perplexity split: documents from the same distribution with another seed, one per line."""
    return "\n\n".join(corpus(n_docs, seed=HELDOUT_SEED))


def vocabulary() -> list[str]:
    """Every word the corpus and the tasks can produce (the word-level tokenizer's vocabulary)."""
    import re

    words: set[str] = set()
    texts = corpus(3000, seed=0) + corpus(200, seed=HELDOUT_SEED)
    for docs in build_tasks().values():
        for d in docs:
            texts.append(json.dumps(d))
    for t in texts:
        words.update(re.findall(r"\w+|[^\w\s]+", t.lower()))
    return sorted(words)


# ---------------------------------------------------------------------------------------------
# tasks

def _mc(rng: random.Random, correct: str, pool: list[str], k: int = 4) -> tuple[list[str], int]:
    wrong = rng.sample([p for p in dict.fromkeys(pool) if p != correct], k - 1)
    choices = wrong + [correct]
    rng.shuffle(choices)
    return choices, choices.index(correct)


def _arc_doc(i: int, question: str, choices: list[str], gold: int, prefix: str) -> dict:
    labels = ["A", "B", "C", "D"][: len(choices)]
    return {"id": f"{prefix}-{i}", "question": question, "choices": {"text": choices, "label": labels},
            "answerKey": labels[gold]}


def build_tasks(n: int = DOCS_PER_TASK, seed: int = TASK_SEED) -> dict[str, list[dict]]:
    rng = random.Random(seed)
    world = animals()
    out: dict[str, list[dict]] = {}

    # BoolQ: passage + yes/no question (acc over ["no", "yes"])
    docs = []
    for i in range(n):
        a = rng.choice(world)
        kind = rng.choice(sorted(_EVIDENCE))
        q, y = _yesno(a, world, rng, kind)
        docs.append({"idx": i, "passage": _passage(a, rng, kind), "question": q, "label": y})
    out["world_boolq"] = docs

    # PIQA: goal + two solutions
    docs = []
    for i in range(n):
        verb, objs, tool = rng.choice(TOOLS)
        wrong = rng.choice([t for _, _, t in TOOLS if t != tool])
        sols = [f"use {tool} .", f"use {wrong} ."]
        label = rng.randrange(2)
        if label == 1:
            sols.reverse()
        docs.append({"goal": f"to {verb} {rng.choice(objs)} ,", "sol1": sols[0], "sol2": sols[1], "label": label})
    out["world_piqa"] = docs

    # HellaSwag: routine prefix + 4 endings (next step; a later step of the same routine; two other routines)
    docs = []
    labels = sorted(SCRIPTS)
    for i in range(n):
        lab = rng.choice(labels)
        p = rng.choice(PEOPLE)
        steps = [s.format(p=p) for s in SCRIPTS[lab]]
        k = rng.randint(2, 4)
        correct = steps[k]
        later = rng.choice(steps[k + 1:]) if k + 1 < len(steps) else steps[0]
        others = [s.format(p=p) for o in rng.sample([x for x in labels if x != lab], 2) for s in [rng.choice(SCRIPTS[o])]]
        endings = [correct, later] + others
        rng.shuffle(endings)
        docs.append({"ind": i, "activity_label": lab, "ctx": " ".join(steps[:k]), "endings": endings,
                     "label": str(endings.index(correct))})
    out["world_hellaswag"] = docs

    # WinoGrande: sentence with a blank and two options; the blank is resolved by world knowledge about the
    # two animals (which of them can swim / eats fish / lives in the cave / is red), scored on the continuation
    docs = []
    preds = {"ability": "can {}", "food": "eats {}", "habitat": "lives in the {}", "color": "is {}"}
    for i in range(n):
        kind = rng.choice(sorted(preds))
        a = rng.choice(world)
        b = rng.choice([x for x in world if getattr(x, kind) != getattr(a, kind)])
        first, second = (a, b) if rng.random() < 0.5 else (b, a)
        sent = f"the {first.name} and the {second.name} are animals , and the _ {preds[kind].format(getattr(a, kind))} ."
        docs.append({"sentence": sent, "option1": first.name, "option2": second.name,
                     "answer": "1" if first is a else "2"})
    out["world_winogrande"] = docs

    # ARC-Easy: one fact recalled
    docs = []
    for i in range(n):
        kind = rng.choice(["color", "habitat", "food", "tool"])
        if kind == "tool":
            verb, objs, tool = rng.choice(TOOLS)
            ch, g = _mc(rng, tool, [t for _, _, t in TOOLS])
            docs.append(_arc_doc(i, f"what do you use to {verb} {rng.choice(objs)} ?", ch, g, "easy"))
            continue
        a = rng.choice(world)
        if kind == "color":
            ch, g = _mc(rng, a.color, COLORS)
            q = f"what color is the {a.name} ?"
        elif kind == "habitat":
            ch, g = _mc(rng, f"the {a.habitat}", [f"the {h}" for h in HABITATS])
            q = f"where does the {a.name} live ?"
        else:
            ch, g = _mc(rng, a.food, list(FOODS))
            q = f"what does the {a.name} eat ?"
        docs.append(_arc_doc(i, q, ch, g, "easy"))
    out["world_arc_easy"] = docs

    # ARC-Challenge: two hops (identify the animal from colour + home, then recall a fact about it)
    docs = []
    for i in range(n):
        a = rng.choice(world)
        kind = rng.choice(["food", "ability", "size"])
        desc = f"the {a.color} animal that lives in the {a.habitat}"
        if kind == "food":
            ch, g = _mc(rng, a.food, list(FOODS))
            q = f"what does {desc} eat ?"
        elif kind == "ability":
            ch, g = _mc(rng, a.ability, list(HABITATS.values()))
            q = f"what can {desc} do ?"
        else:
            ch, g = _mc(rng, a.name, [b.name for b in world if b.habitat != a.habitat or b.name == a.name])
            q = f"which animal is {desc} ?"
        docs.append(_arc_doc(i, q, ch, g, "challenge"))
    out["world_arc_challenge"] = docs

    # OpenBookQA: a rule of the world applied to a case
    docs = []
    for i in range(n):
        kind = rng.choice(["habitat_rule", "diet_rule", "size_rule", "animal_ability", "animal_diet"])
        if kind == "habitat_rule":
            h = rng.choice(sorted(HABITATS))
            stem, correct, pool = f"animals that live in the {h} can", HABITATS[h], list(HABITATS.values())
        elif kind == "diet_rule":
            f = rng.choice(sorted(FOODS))
            stem, correct, pool = f"an animal that eats {f} is a", FOODS[f], ["grazer", "hunter", "forager", "swimmer"]
        elif kind == "size_rule":
            s = rng.choice(sorted(SIZES))
            stem, correct, pool = f"a {s} animal is", SIZES[s], ["heavy", "light", "green", "loud"]
        elif kind == "animal_ability":
            a = rng.choice(world)
            stem, correct, pool = f"the {a.name} lives in the {a.habitat} , so it can", a.ability, list(HABITATS.values())
        else:
            a = rng.choice(world)
            stem, correct, pool = f"the {a.name} eats {a.food} , so it is a", a.diet, ["grazer", "hunter", "forager", "swimmer"]
        ch, g = _mc(rng, correct, pool)
        labels_ = ["A", "B", "C", "D"]
        docs.append({"id": f"obqa-{i}", "question_stem": stem, "choices": {"text": ch, "label": labels_},
                     "answerKey": labels_[g]})
    out["world_openbookqa"] = docs
    return out


CHANCE = {"world_boolq": 0.5, "world_piqa": 0.5, "world_hellaswag": 0.25, "world_winogrande": 0.5,
          "world_arc_easy": 0.25, "world_arc_challenge": 0.25, "world_openbookqa": 0.25}


def write(folder: Path) -> None:
    folder = Path(folder)
    (folder / "data").mkdir(parents=True, exist_ok=True)
    for name, docs in build_tasks().items():
        with open(folder / "data" / f"{name}.jsonl", "w") as f:
            for d in docs:
                f.write(json.dumps(d, sort_keys=True) + "\n")
    (folder / "data" / "world_heldout.txt").write_text(heldout_text() + "\n")


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--write", action="store_true", help="rewrite benchmarks/lm_tasks/data/*")
    args = ap.parse_args()
    if args.write:
        write(Path(__file__).resolve().parents[1] / "lm_tasks")
    else:
        for k, v in build_tasks().items():
            print(k, len(v), json.dumps(v[0]))
